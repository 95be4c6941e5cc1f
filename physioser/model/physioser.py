"""The PhysioSER model: VAP branch + frozen backbone branch + CPA + attention fusion head.

Two paths compute the same function:

* ``forward(waveforms [B, S], lengths [B]) -> dict(logits, probs, embedding)`` — the exportable
  inference path: the frozen backbone's hidden states → segment mean pooling per layer → learned
  layer weights (Featurizer) and linear projector → z_s and segment tokens; the VAP branch (front
  end + quaternion encoder) → z_v and segment tokens; fusion head → logits.
* ``forward_cached(batch)`` — the training path. It reads, per utterance, the backbone hidden
  states already mean-pooled over 4 segments per layer (``backbone_segments`` [B, L, 4, D] with
  ``backbone_counts`` [B, 4]) and the cached VAP quartet (``quartet`` [B, 4, F, T],
  ``quartet_lengths`` [B]): the same pooled statistics as the inference path (checked by the
  tests), so an epoch costs seconds.

Branch tokens (width ``model.dim``): z_v, z_s and, with ``model.segments = K > 0``, K segment means of
each branch's projected frames. Heads: ``fusion`` (one attention block, see :mod:`.fusion`),
``linear`` (concatenated utterance vectors → linear; with the backbone branch alone this is the
SUPERB recipe: weighted layer sum → projector → mean pool → linear) or ``mlp``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from physioser.model.cpa import CPA
from physioser.model.fusion import FusionHead
from physioser.model.pooling import merge_segments, segment_mean

__all__ = ["PhysioSER", "CACHE_SEGMENTS", "vap_config", "build_backbone_for"]

CACHE_SEGMENTS = 4
"""Number of segments the backbone statistics are pooled to in the cache."""


def vap_config(cfg: dict):
    """The VAPConfig of an experiment config (``model.vap`` overrides of its defaults)."""
    from physioser.vap import VAPConfig

    return VAPConfig(**cfg["model"]["vap"])


def build_backbone_for(cfg: dict) -> nn.Module | None:
    """The frozen backbone of a config (None when the model has no backbone branch)."""
    if "backbone" not in cfg["model"]["branches"]:
        return None
    from physioser.backbones import build_backbone

    return build_backbone(cfg["backbone"]["name"], **cfg["backbone"]["options"])


class PhysioSER(nn.Module):
    """Args: cfg (resolved experiment config with ``class_names`` and ``backbone.num_layers``/``dim``),
    backbone (the frozen encoder module, needed only by ``forward``; None for cached training)."""

    def __init__(self, cfg: dict, backbone: nn.Module | None = None) -> None:
        super().__init__()
        m = cfg["model"]
        self.class_names = list(cfg["class_names"])
        self.use_vap = "vap" in m["branches"]
        self.use_backbone = "backbone" in m["branches"]
        self.segments = int(m["segments"]) if m["head"] == "fusion" else 0
        self.head_type = m["head"]
        dim = int(m["dim"])
        num_classes = len(self.class_names)
        if backbone is not None:
            self.backbone = backbone
        if self.use_backbone:
            from physioser.backbones import Featurizer

            layers, width = int(cfg["backbone"]["num_layers"]), int(cfg["backbone"]["dim"])
            self.num_layers = layers
            self.featurizer = Featurizer(layers) if m["featurizer"] else None
            # shared: one projector after the weighted layer sum (SUPERB); per_layer: each layer has its
            # own projector and the learned softmax weights mix the projections (a gated concatenation)
            self.per_layer = m["projector"] == "per_layer"
            if self.per_layer:
                self.layer_proj = nn.Parameter(torch.randn(layers, width, dim) / width**0.5)
                self.layer_bias = nn.Parameter(torch.zeros(layers, 1, 1, dim))
            else:
                self.projector = nn.Linear(width, dim)
            # fixed per-layer standardisation (linear, so it commutes with pooling); set from the
            # training set's utterance means by set_layer_statistics, stored with the weights
            self.register_buffer("layer_mean", torch.zeros(layers, 1, width))
            self.register_buffer("layer_std", torch.ones(layers, 1, width))
        if self.use_vap:
            from physioser.vap import VAPBranch

            self.vap = VAPBranch(vap_config(cfg))
            self.vap_proj = nn.Linear(self.vap.out_dim, dim)
        self.act = nn.Sequential(nn.GELU(), nn.LayerNorm(dim))
        n_branches = int(self.use_vap) + int(self.use_backbone)
        if float(cfg["cpa"]["weight"]) > 0:
            c = cfg["cpa"]
            self.cpa = CPA(
                dim, dim, dim=int(c["dim"]), hidden=int(c["hidden"]), temperature=float(c["temperature"]),
                max_logit_scale=float(c["max_logit_scale"]), supervised=bool(c["supervised"]),
            )
        else:
            self.cpa = None
        if self.head_type == "fusion":
            f = m["fusion"]
            self.head = FusionHead(
                dim, n_branches * (1 + self.segments), num_classes, attention=f["attention"], heads=int(f["heads"]),
                mlp_ratio=float(f["mlp_ratio"]), dropout=float(m["dropout"]), options=f["options"],
            )
        elif self.head_type == "mlp":
            self.head = nn.Sequential(
                nn.Linear(n_branches * dim, dim), nn.GELU(), nn.Dropout(float(m["dropout"])), nn.Linear(dim, num_classes)
            )
        else:
            self.head = nn.Linear(n_branches * dim, num_classes)
        self.drop = nn.Dropout(float(m["dropout"]))

    # -- branches ------------------------------------------------------------------------------
    @torch.no_grad()
    def set_layer_statistics(self, segments: torch.Tensor, counts: torch.Tensor) -> None:
        """Standardise each backbone layer by the mean/std over utterances of its utterance means.

        segments [N, L, 4, D] cached segment means, counts [N, 4] (the training rows only)."""
        w = counts / counts.sum(1, keepdim=True).clamp(min=1.0)
        utt = (segments * w[:, None, :, None]).sum(2)  # [N, L, D]
        self.layer_mean.copy_(utt.mean(0)[:, None, :])
        self.layer_std.copy_(utt.std(0).clamp(min=1e-4)[:, None, :])

    def _project_layers(self, layers: torch.Tensor) -> torch.Tensor:
        """[L, B, T, D] stacked per-layer hidden states (or segment means) -> [B, T, dim]:
        standardise each layer, mix with the learned layer weights, project (all linear)."""
        layers = (layers - self.layer_mean[:, None]) / self.layer_std[:, None]
        if self.per_layer:
            layers = torch.einsum("lbtd,lde->lbte", layers, self.layer_proj) + self.layer_bias
        if self.featurizer is None:
            mixed = layers[-1]
        else:
            mixed = self.featurizer(list(layers.unbind(0)))
        return mixed if self.per_layer else self.projector(mixed)

    def _backbone_tokens(self, seg_means: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """seg_means [B, 4, dim] projected segment means, counts [B, 4] -> (z_s [B, dim], tokens [B, K, dim] or None)."""
        z = (seg_means * counts[..., None]).sum(1) / counts.sum(1, keepdim=True).clamp(min=1.0)
        tokens = merge_segments(seg_means, counts, self.segments)[0] if self.segments else None
        return z, tokens

    def _vap_tokens(self, z_v: torch.Tensor, frames: torch.Tensor, lengths: torch.Tensor):
        z = self.vap_proj(z_v)
        if not self.segments:
            return z, None
        # project the segment means rather than every frame (the same for a linear map; an empty
        # segment keeps its zero token)
        means, counts = segment_mean(frames, lengths, self.segments)
        return z, self.vap_proj(means) * (counts > 0).to(means.dtype)[..., None]

    # -- shared tail -----------------------------------------------------------------------------
    def _head(self, parts: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """parts: [(z [B, dim], tokens [B, K, dim] or None)] per branch (vap first) -> logits, embedding, aux."""
        # the linear head stays linear end to end (SUPERB); fusion and MLP heads see GELU + LayerNorm tokens
        zs = [z if self.head_type == "linear" else self.act(z) for z, _ in parts]
        aux: dict[str, torch.Tensor] = {}
        if self.head_type == "fusion":
            tokens = torch.cat([z[:, None] for z in zs] + [self.act(t) for _, t in parts if t is not None], dim=1)
            logits, embedding, aux = self.head(self.drop(tokens))
        else:
            embedding = torch.cat(zs, dim=-1)
            logits = self.head(self.drop(embedding))
        return {"logits": logits, "embedding": embedding, "aux": aux, "z": zs}

    # -- inference path (exportable) ---------------------------------------------------------
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """waveforms [B, S] float32 16 kHz, lengths [B] int64 -> dict(logits [B, C], probs [B, C], embedding [B, E])."""
        parts = []
        if self.use_vap:
            z_v, frames, frame_lengths = self.vap(waveforms, lengths)
            # ONNX: tie the batch axis of z_v to the input's dynamic batch; the exporter otherwise
            # infers it as the example's batch and folds later shape lookups (head, attention) into constants
            z_v = z_v.reshape(lengths.shape[0], -1)
            parts.append(self._vap_tokens(z_v, frames, frame_lengths))
        if self.use_backbone:
            if not hasattr(self, "backbone"):
                raise RuntimeError("PhysioSER.forward needs the frozen backbone: build the model with backbone=...")
            hidden, hidden_lengths = self.backbone(waveforms, lengths)
            # pool each layer's frames into segment means, then project them (the projection is
            # linear, so this equals projecting every frame, and it is what training sees: cached
            # segment means)
            means, counts = segment_mean(torch.stack(list(hidden[-self.num_layers :]), 0), hidden_lengths, CACHE_SEGMENTS)
            parts.append(self._backbone_tokens(self._project_layers(means), counts))
        out = self._head(parts)
        return {"logits": out["logits"], "probs": F.softmax(out["logits"], dim=-1), "embedding": out["embedding"]}

    # -- training path (cached features) ------------------------------------------------------------
    def forward_cached(self, batch: dict[str, torch.Tensor]) -> dict:
        """batch: ``labels`` [B]; ``backbone_segments`` [B, L, 4, D] + ``backbone_counts`` [B, 4] (backbone
        branch); ``quartet`` [B, 4, F, T] + ``quartet_lengths`` [B] (VAP branch). Returns logits,
        embedding, ``aux`` (summed auxiliary losses of the attention variant), ``cpa`` (when CPA is on)
        and ``stats`` (detached scalars for logging)."""
        parts = []
        if self.use_vap:
            z_v, frames, frame_lengths = self.vap.encode_quartet(batch["quartet"], batch["quartet_lengths"])
            parts.append(self._vap_tokens(z_v, frames, frame_lengths))
        if self.use_backbone:
            projected = self._project_layers(batch["backbone_segments"].transpose(0, 1))  # [B, 4, dim]
            parts.append(self._backbone_tokens(projected, batch["backbone_counts"]))
        out = self._head(parts)
        from physioser.nn.attention import aux_loss

        result = {"logits": out["logits"], "embedding": out["embedding"], "stats": {}}
        result["aux"] = torch.as_tensor(aux_loss(out["aux"]), dtype=out["logits"].dtype)
        if self.cpa is not None:
            result["cpa"], result["stats"] = self.cpa(parts[0][0], parts[1][0], batch["labels"])
        return result
