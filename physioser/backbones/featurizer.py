"""s3prl-style layer weighting: a learned softmax over the hidden states of a frozen backbone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Featurizer(nn.Module):
    """Weighted sum of layers with softmax weights (initialised uniform).

    Args:
        num_layers: number of hidden states the backbone returns.
        layers: optional subset of layer indices to weight (others are ignored); negative
            indices count from the end.
        normalize: layer-normalise each layer (no affine) before weighting, as s3prl does.

    forward(hidden_states) -> [B, ..., D]. ``hidden_states`` is a sequence of ``num_layers``
    tensors [B, ..., D] (a backbone's output), or one tensor [B, num_layers, ..., D] (the layer
    axis second, as batches of cached features come).
    """

    def __init__(self, num_layers: int, layers: Sequence[int] | None = None, normalize: bool = False) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"Featurizer needs at least one layer, got {num_layers}")
        requested = list(range(num_layers)) if layers is None else [int(i) for i in layers]
        if not requested or any(not -num_layers <= i < num_layers for i in requested):
            raise ValueError(f"Featurizer: invalid layer selection {layers} for {num_layers} layers")
        selected = [i % num_layers for i in requested]
        if len(set(selected)) != len(selected):
            raise ValueError(f"Featurizer: layer selection {layers} repeats a layer")
        self.num_layers = num_layers
        self.normalize = normalize
        self.register_buffer("selected", torch.tensor(selected, dtype=torch.long), persistent=False)
        self.weights = nn.Parameter(torch.zeros(len(selected)))

    def layer_weights(self) -> torch.Tensor:
        """Softmax weights [len(layers)] of the selected layers."""
        return torch.softmax(self.weights, dim=0)

    def forward(self, hidden_states: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if isinstance(hidden_states, torch.Tensor):
            if hidden_states.dim() < 3 or hidden_states.shape[1] != self.num_layers:
                raise ValueError(
                    f"Featurizer: expected [B, {self.num_layers}, ..., D], got shape {tuple(hidden_states.shape)}"
                )
            stacked = hidden_states.index_select(1, self.selected).movedim(1, 0)
        else:
            if len(hidden_states) != self.num_layers:
                raise ValueError(f"Featurizer: expected {self.num_layers} hidden states, got {len(hidden_states)}")
            stacked = torch.stack([hidden_states[i] for i in self.selected.tolist()], dim=0)
        stacked = stacked.float()
        if self.normalize:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        weights = self.layer_weights().reshape((-1,) + (1,) * (stacked.dim() - 1))
        return (weights * stacked).sum(dim=0)
