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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from physioser.model.config import Config
from physioser.model.cpa import CPA
from physioser.model.fusion import FusionHead
from physioser.model.pooling import frame_statistics, merge_segments, segment_mean
from physioser.runtime.adaptation import mixing_weight

__all__ = ["PhysioSER", "CACHE_SEGMENTS"]

CACHE_SEGMENTS = 4
"""Number of segments the backbone statistics are pooled to in the cache."""


class PhysioSER(nn.Module):
    """Args: config (resolved: ``class_names`` and, with the backbone branch, ``backbone.num_layers``/``dim``
    set; see :func:`physioser.model.build_model`), backbone (the frozen encoder module, needed only by
    ``forward``; None for cached training)."""

    def __init__(self, config: Config, backbone: nn.Module | None = None) -> None:
        super().__init__()
        m = config.model
        if config.class_names is None:
            raise ValueError("the config has no class_names: set them from the training data first")
        self.class_names = list(config.class_names)
        self.use_vap = m.uses("vap")
        self.use_backbone = m.uses("backbone")
        self.segments = m.segments if m.head == "fusion" else 0
        self.head_type = m.head
        dim = m.dim
        num_classes = len(self.class_names)
        if backbone is not None:
            self.backbone = backbone
        if self.use_backbone:
            from physioser.backbones import Featurizer

            layers, width = config.backbone.num_layers, config.backbone.dim
            if layers is None or width is None:
                raise ValueError("the config has no backbone shape: set it with Config.with_backbone_shape")
            self.num_layers = layers
            self.featurizer = Featurizer(layers) if m.featurizer else None
            # shared: one projector after the weighted layer sum (SUPERB); per_layer: each layer has its
            # own projector and the learned softmax weights mix the projections (a gated concatenation)
            self.per_layer = m.projector == "per_layer"
            # statistics pooling: each layer's mean and standard deviation over the utterance's frames
            self.statistics = m.statistics
            in_width = 2 * width if self.statistics else width
            if self.per_layer:
                self.layer_proj = nn.Parameter(torch.randn(layers, in_width, dim) / in_width**0.5)
                self.layer_bias = nn.Parameter(torch.zeros(layers, 1, 1, dim))
            else:
                self.projector = nn.Linear(in_width, dim)
            # fixed per-layer standardisation (linear, so it commutes with pooling); set from the
            # training set's utterance means (and standard deviations) by set_layer_statistics
            self.register_buffer("layer_mean", torch.zeros(layers, 1, width))
            self.register_buffer("layer_std", torch.ones(layers, 1, width))
            if self.statistics:
                self.register_buffer("spread_mean", torch.zeros(layers, 1, width))
                self.register_buffer("spread_std", torch.ones(layers, 1, width))
                # per-class offsets of the standardised statistics from their mean over classes
                # (set from the training rows by set_class_offsets): speaker adaptation removes the
                # predicted emotion's offset before it averages a speaker's utterances
                self.register_buffer("class_offsets", torch.zeros(num_classes, layers * in_width))
                # how far the training speakers span the emotions (mean normalised entropy of each
                # speaker's labels, set by set_class_offsets): how much a speaker's offset may trust the
                # plain speaker mean (runtime.adaptation); 0 in models saved before it existed
                self.register_buffer("speaker_balance", torch.zeros(()))
            self.input_drop = nn.Dropout(float(m.input_dropout))
            self.adaptation_tau = float(config.adapt.tau)  # shrinkage of the speaker offsets (runtime.adaptation)
        if self.use_vap:
            from physioser.vap import VAPBranch

            self.vap = VAPBranch(m.vap)
            self.vap_proj = nn.Linear(self.vap.out_dim, dim)
        self.act = nn.Sequential(nn.GELU(), nn.LayerNorm(dim))
        n_branches = int(self.use_vap) + int(self.use_backbone)
        c = config.cpa
        if c.weight > 0:
            self.cpa = CPA(dim, dim, dim=c.dim, hidden=c.hidden, temperature=float(c.temperature),
                           max_logit_scale=float(c.max_logit_scale), supervised=c.supervised)
        else:
            self.cpa = None
        if self.head_type == "fusion":
            f = m.fusion
            self.head = FusionHead(
                dim, n_branches * (1 + self.segments), num_classes, attention=f.attention, heads=f.heads,
                mlp_ratio=float(f.mlp_ratio), dropout=float(m.dropout), options=f.options,
            )
        elif self.head_type == "mlp":
            self.head = nn.Sequential(
                nn.Linear(n_branches * dim, dim), nn.GELU(), nn.Dropout(float(m.dropout)), nn.Linear(dim, num_classes)
            )
        else:
            self.head = nn.Linear(n_branches * dim, num_classes)
        self.drop = nn.Dropout(float(m.dropout))
        # physiology-use training aids (see ModelConfig): branch dropout acts in forward_cached only; the
        # VAP classifier serves the auxiliary loss (training only) and, gated, the late fusion
        self.branch_dropout = float(m.branch_dropout)
        self.late_fusion = m.late_fusion
        if self.use_vap and (self.late_fusion == "gated" or config.train.vap_aux_weight > 0):
            self.vap_classifier = nn.Linear(dim, num_classes)
        if self.late_fusion == "gated":
            self.fusion_gate = nn.Linear(n_branches * dim, 1)

    # -- branches ------------------------------------------------------------------------------
    @torch.no_grad()
    def set_layer_statistics(self, segments: torch.Tensor, counts: torch.Tensor, spread: torch.Tensor | None = None) -> None:
        """Standardise each backbone layer by the mean/std over utterances of its utterance means
        (and, with statistics pooling, of its frame standard deviations).

        segments [N, L, 4, D] cached segment means, counts [N, 4], spread [N, L, D] frame standard
        deviations (the training rows only)."""
        w = counts / counts.sum(1, keepdim=True).clamp(min=1.0)
        utt = (segments * w[:, None, :, None]).sum(2)  # [N, L, D]
        self.layer_mean.copy_(utt.mean(0)[:, None, :])
        self.layer_std.copy_(utt.std(0).clamp(min=1e-4)[:, None, :])
        if self.statistics:
            if spread is None:
                raise ValueError("statistics pooling needs the frame standard deviations of the training rows")
            self.spread_mean.copy_(spread.mean(0)[:, None, :])
            self.spread_std.copy_(spread.std(0).clamp(min=1e-4)[:, None, :])

    @torch.no_grad()
    def set_class_offsets(self, features: torch.Tensor, labels: torch.Tensor, speakers) -> None:
        """features [N, F] standardised statistics (:meth:`cached_features` of the training rows with no
        speaker offset), labels [N], speakers (N ids): each class's mean minus the mean of the class
        means (a class without rows keeps a zero offset), and the speakers' emotion balance (the mean
        over training speakers of the entropy of their labels, normalised to [0, 1])."""
        means = torch.zeros_like(self.class_offsets)
        present = torch.zeros(len(means), dtype=torch.bool)
        for c in range(len(means)):
            rows = labels == c
            if bool(rows.any()):
                means[c], present[c] = features[rows].mean(0), True
        centre = means[present].mean(0)
        self.class_offsets.copy_(torch.where(present[:, None], means - centre, torch.zeros_like(means)))
        speakers = np.asarray(speakers)
        shares = [np.bincount(labels.numpy()[speakers == s], minlength=len(means)) for s in np.unique(speakers)]
        self.speaker_balance.fill_(float(np.mean([mixing_weight(n, 1.0) for n in shares])))

    def _standardised_statistics(self, means: torch.Tensor, spreads: torch.Tensor) -> torch.Tensor:
        """means, spreads [B, L, D] per-layer frame mean and standard deviation -> [B, L·2D] standardised."""
        m = (means - self.layer_mean[:, 0]) / self.layer_std[:, 0]
        s = (spreads - self.spread_mean[:, 0]) / self.spread_std[:, 0]
        return torch.cat([m, s], dim=-1).flatten(1)

    def _project_statistics(self, features: torch.Tensor) -> torch.Tensor:
        """[B, L·2D] standardised (possibly speaker-adapted) statistics -> z_s [B, dim]."""
        layers = self.input_drop(features).unflatten(1, (self.num_layers, -1)).transpose(0, 1)  # [L, B, 2D]
        if self.per_layer:
            layers = torch.einsum("lbd,lde->lbe", layers, self.layer_proj) + self.layer_bias[:, 0]
        mixed = layers[-1] if self.featurizer is None else self.featurizer(list(layers.unbind(0)))
        return mixed if self.per_layer else self.projector(mixed)

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
    def _head(self, parts: list[tuple[torch.Tensor, torch.Tensor]], mix: tuple[torch.Tensor, torch.Tensor] | None = None,
              vap_logits: bool = False) -> dict[str, torch.Tensor]:
        """parts: [(z [B, dim], tokens [B, K, dim] or None)] per branch (vap first) -> logits, embedding, aux
        (and ``vap_logits`` of the VAP classifier when gated or asked for, ``gate`` when gated).
        ``mix`` = (permutation [B], weight lam [] ): training mixup of the branch vectors and tokens
        (lam · own + (1 − lam) · the permuted row's)."""
        if mix is not None:
            perm, lam = mix
            parts = [(lam * z + (1 - lam) * z[perm], None if t is None else lam * t + (1 - lam) * t[perm]) for z, t in parts]
        # the linear head stays linear end to end (SUPERB); fusion and MLP heads see GELU + LayerNorm tokens
        zs = [z if self.head_type == "linear" else self.act(z) for z, _ in parts]
        aux: dict[str, torch.Tensor] = {}
        if self.head_type == "fusion":
            tokens = torch.cat([z[:, None] for z in zs] + [self.act(t) for _, t in parts if t is not None], dim=1)
            logits, embedding, aux = self.head(self.drop(tokens))
        else:
            embedding = torch.cat(zs, dim=-1)
            logits = self.head(self.drop(embedding))
        out = {"logits": logits, "embedding": embedding, "aux": aux, "z": zs}
        if hasattr(self, "vap_classifier") and (vap_logits or self.late_fusion == "gated"):
            out["vap_logits"] = self.vap_classifier(self.drop(zs[0]))
        if self.late_fusion == "gated":
            gate = torch.sigmoid(self.fusion_gate(torch.cat(zs, dim=-1)))  # [B, 1]
            out["logits"] = (1.0 - gate) * logits + gate * out["vap_logits"]
            out["gate"] = gate[:, 0]
        return out

    def _statistics_part(self, features: torch.Tensor, speaker_offset: torch.Tensor | None):
        """(z_s, None) from standardised statistics minus the speaker's offset (zeros: strict)."""
        adapted = features if speaker_offset is None else features - speaker_offset
        return self._project_statistics(adapted), None

    def speaker_features(self, features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """What a speaker's running statistics average: the standardised statistics [B, F] minus the
        offset of the emotion the model predicts (probs [B, C]), so that a speaker heard in one
        emotion only is not mistaken for a neutral voice (no label is read)."""
        return features - probs @ self.class_offsets

    # -- inference path (exportable) ---------------------------------------------------------
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor, speaker_offset: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """waveforms [B, S] float32 16 kHz, lengths [B] int64 (speaker_offset [B, F], statistics pooling
        only: subtracted from the standardised statistics) -> dict(logits [B, C], probs [B, C],
        embedding [B, E]; with statistics pooling also ``features`` [B, F] (standardised statistics)
        ``speaker_features`` [B, F] (see :meth:`speaker_features`) and ``speaker_probs`` [B, C], the
        probabilities without the offset: what the speaker's adaptation state sums)."""
        parts = []
        if self.use_vap:
            z_v, frames, frame_lengths = self.vap(waveforms, lengths)
            # ONNX: tie the batch axis of z_v to the input's dynamic batch; the exporter otherwise
            # infers it as the example's batch and folds later shape lookups (head, attention) into constants
            z_v = z_v.reshape(lengths.shape[0], -1)
            parts.append(self._vap_tokens(z_v, frames, frame_lengths))
        features = None
        if self.use_backbone:
            if not hasattr(self, "backbone"):
                raise RuntimeError("PhysioSER.forward needs the frozen backbone: build the model with backbone=...")
            hidden, hidden_lengths = self.backbone(waveforms, lengths)
            stacked = torch.stack(list(hidden[-self.num_layers :]), 0)  # [L, B, T, D]
            if self.statistics:
                means, spreads = frame_statistics(stacked, hidden_lengths)
                features = self._standardised_statistics(means.transpose(0, 1), spreads.transpose(0, 1))
                parts.append(self._statistics_part(features, speaker_offset))
            else:
                # pool each layer's frames into segment means, then project them (the projection is
                # linear, so this equals projecting every frame, and it is what training sees: cached
                # segment means)
                means, counts = segment_mean(stacked, hidden_lengths, CACHE_SEGMENTS)
                parts.append(self._backbone_tokens(self._project_layers(means), counts))
        out = self._head(parts)
        probs = F.softmax(out["logits"], dim=-1)
        result = {"logits": out["logits"], "probs": probs, "embedding": out["embedding"]}
        if features is not None:
            # the speaker's evidence comes from the strict pass: evidence from the adapted pass feeds the
            # offset back into itself, and a speaker heard in one emotion drifts away from it
            strict = probs
            if speaker_offset is not None:
                strict = F.softmax(self._head([*parts[:-1], self._statistics_part(features, None)])["logits"], dim=-1)
            result["features"] = features
            result["speaker_features"] = self.speaker_features(features, strict)
            result["speaker_probs"] = strict
        return result

    # -- training path (cached features) ------------------------------------------------------------
    def cached_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Standardised statistics [B, F] of a cached batch (statistics pooling only)."""
        w = batch["backbone_counts"] / batch["backbone_counts"].sum(1, keepdim=True).clamp(min=1.0)
        means = (batch["backbone_segments"] * w[:, None, :, None]).sum(2)  # [B, L, D]
        return self._standardised_statistics(means, batch["backbone_spread"])

    def forward_cached(self, batch: dict[str, torch.Tensor]) -> dict:
        """batch: ``labels`` [B]; ``backbone_segments`` [B, L, 4, D] + ``backbone_counts`` [B, 4] (backbone
        branch; with statistics pooling also ``backbone_spread`` [B, L, D] and optionally
        ``speaker_offset`` [B, F]); ``quartet`` [B, 4, F, T] + ``quartet_lengths`` [B] (VAP branch).
        Returns logits, embedding, ``aux`` (summed auxiliary losses of the attention variant), ``cpa``
        (when CPA is on), ``features`` (statistics pooling) and ``stats`` (detached scalars for logging)."""
        parts = []
        if self.use_vap:
            z_v, frames, frame_lengths = self.vap.encode_quartet(batch["quartet"], batch["quartet_lengths"])
            parts.append(self._vap_tokens(z_v, frames, frame_lengths))
        features = None
        if self.use_backbone:
            if self.statistics:
                features = self.cached_features(batch)
                parts.append(self._statistics_part(features, batch.get("speaker_offset")))
            else:
                projected = self._project_layers(batch["backbone_segments"].transpose(0, 1))  # [B, 4, dim]
                parts.append(self._backbone_tokens(projected, batch["backbone_counts"]))
        head_parts = parts
        if self.training and self.branch_dropout > 0:
            # zero the backbone tokens of a random share of the utterances (CPA still sees them)
            z_s, tokens = parts[1]
            keep = (torch.rand(z_s.shape[0], 1, device=z_s.device) >= self.branch_dropout).to(z_s.dtype)
            head_parts = [parts[0], (z_s * keep, None if tokens is None else tokens * keep[:, :, None])]
        mix = (batch["mixup_perm"], batch["mixup_lam"]) if "mixup_perm" in batch else None
        out = self._head(head_parts, mix, vap_logits=True)
        from physioser.nn.attention import aux_loss

        result = {"logits": out["logits"], "embedding": out["embedding"], "stats": {}}
        if features is not None:
            result["features"] = features
        result["aux"] = torch.as_tensor(aux_loss(out["aux"]), dtype=out["logits"].dtype)
        for key in ("vap_logits", "gate"):
            if key in out:
                result[key] = out[key]
        if self.cpa is not None:
            result["cpa"], result["stats"] = self.cpa(parts[0][0], parts[1][0], batch["labels"])
        return result
