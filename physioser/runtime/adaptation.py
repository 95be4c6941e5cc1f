"""Unsupervised speaker adaptation from unlabelled speech of the speaker (numpy only, no torch).

A model with statistics pooling standardises each backbone layer's frame mean and deviation by
the training set; a speaker's voice shifts those statistics. Adaptation subtracts a *speaker
offset* from them, estimated from the utterances of the speaker heard so far. Each utterance
gives its *evidence* (:func:`evidence`): the statistics ``x`` (the graph's ``features``), the
same minus the offset of the emotion the model predicts for it, ``c = x - p · class_offsets``
(``speaker_features``), and the predicted probabilities ``p`` (``speaker_probs``; ``probs`` for a
graph without it). ``p`` and ``c`` come from the input *without* the offset: evidence from the
adapted pass would feed the offset back into itself. Over the speaker's utterances (weights ``w``):

    offset = (a · Σ w x + (1 − a) · Σ w c) / (Σ w + tau),     a = balance · H(Σ w p / Σ w)

* ``Σ w x / Σ w`` is the plain speaker mean: right for a speaker heard in every emotion, but
  for a speaker heard in one emotion only it *is* that emotion, and removing it normalises an
  angry speaker into a neutral one;
* ``Σ w c / Σ w`` removes the predicted emotion first, which keeps such a speaker's emotion, but
  also gives back much of what the plain mean gains where speakers span the emotions (the
  speaker's own shift biases the predictions it is corrected with);
* ``a`` mixes the two: ``H`` is the entropy of the speaker's mean predicted distribution,
  normalised to [0, 1] (1: the predictions spread over every class, 0: one class), and
  ``balance`` is the same entropy of the *true* emotions of the training speakers, averaged over
  them (from training labels only): how far the speakers of the training population span the
  emotions (1 for an acted corpus where everyone speaks every emotion, near 0 for talk-show clips
  where most speakers carry one). ``balance = 0`` is the compensated mean alone.

``tau`` (utterances) pulls an estimate from few utterances toward no adaptation. Nothing here
reads a label.

With a :class:`SpeakerReference`, the offset is measured against the training speakers nearest to
the speaker (their mean statistics, clean and as each kind of training copy presents them, and
their emotion balance) rather than against the training set's
origin: in a model trained on several corpora the plain speaker mean also removes the language and
recording set-up, which the model had learned to read, and a population-wide ``balance`` fits none
of its corpora. Then ``x`` and ``c`` above are taken relative to the neighbours' mean ``x`` and
``c``, ``balance`` is the neighbours', and the offset is scaled by it: where the speakers most like
this one were each heard in one emotion, a speaker's mean may be their emotion too, so it is trusted
as far as those speakers spanned the emotions (docs/adaptation.md). ``physioser train`` writes a model's
reference beside its weights (:data:`REFERENCE_FILE`), an export puts it in the bundle
(``engine.speaker_reference``); :func:`protocol_offsets` uses it wherever the model carries one, the
stream only when asked (``Streamer(adapt_reference=True)``: there it is level with the default rule).

* :func:`speaker_offsets` — the evaluation protocol: each utterance gets the offset of ``k``
  random utterances of its own speaker (``k=None``: all of them; ``k=0``: none, the strict protocol);
  :func:`utterance_evidence` and :func:`protocol_offsets` run it on a graph's outputs.
* :class:`SpeakerAdaptation` — the run-time state: running sums per speaker, at most
  ``max_speakers`` of them (least recently used evicted), resettable, saved only when asked.
"""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["STREAM_TAU", "REFERENCE_NEIGHBOURS", "REFERENCE_FILE", "SpeakerReference", "evidence", "output_evidence", "mixing_weight", "offsets_from_sums", "speaker_offset", "speaker_offsets", "utterance_evidence",
           "protocol_offsets", "SpeakerAdaptation", "VoiceIds", "AdaptationError"]


STREAM_TAU = 32.0
"""The stream's shrinkage τ, in utterance weights (a 2 s window hopped by 0.5 s adds 0.25, so one
weight is about 2 s of speech): a speaker's offset reaches half its strength after about a minute
of their voice. Whole-file figures use the model's own τ (metadata ``adaptation.tau``); in the
stream a small τ lets the first windows of a speaker heard in one emotion pull the offset onto
that emotion (docs/adaptation.md)."""


REFERENCE_NEIGHBOURS = 5
"""Training speakers a :class:`SpeakerReference` measures a speaker against (chosen over 3 and 10 in a
screen not kept in the repository; docs/adaptation.md gives its figures)."""


REFERENCE_FILE = "speaker_reference.npz"
"""A model directory's and a bundle's :class:`SpeakerReference` (written by ``physioser train``)."""


class AdaptationError(ValueError):
    """Speaker features or a saved adaptation state that do not fit."""


class SpeakerReference:
    """The training speakers an offset is measured against: entries of mean :func:`evidence` features
    and speaker features ``means`` [S, 2F] (one per training speaker and kind of training row, as
    :func:`physioser.model.adaptation.speaker_reference` writes them: a speaker in noise lies nearest
    to the noisy copies of similar speakers, not to whichever clean speakers noise pushes it toward)
    and the emotion balance ``balance`` [S] of each entry's speaker (normalised entropy of their true
    emotions, from training labels); :meth:`nearest` averages the ``neighbours`` nearest entries (all
    of them where there are fewer)."""

    def __init__(self, means: np.ndarray, balance: np.ndarray, neighbours: int = REFERENCE_NEIGHBOURS) -> None:
        self.means = np.asarray(means, dtype=np.float64)
        self.balance = np.asarray(balance, dtype=np.float64)
        if (self.means.ndim != 2 or self.means.shape[1] % 2 or self.balance.shape != (len(self.means),)
                or not len(self.means) or neighbours < 1 or not np.all(np.isfinite(self.means))
                or not np.all((self.balance >= 0) & (self.balance <= 1))):
            raise AdaptationError(f"a speaker reference needs means [S, 2F], balances in [0, 1] [S] and neighbours >= 1; "
                                  f"got {self.means.shape}, {self.balance.shape} and {neighbours}")
        self.neighbours = min(int(neighbours), len(self.means))

    @property
    def dim(self) -> int:
        return self.means.shape[1] // 2

    def nearest(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Speaker mean features [m, F] -> (the nearest entries' mean features and speaker features
        [m, 2F], their mean balance [m]), nearest by Euclidean distance of the features."""
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if x.shape[1] != self.dim:
            raise AdaptationError(f"speaker features of width {x.shape[1]} do not fit a reference of width {self.dim}")
        dist = ((x[:, None, :] - self.means[None, :, : self.dim]) ** 2).sum(-1)
        near = np.argsort(dist, axis=1, kind="stable")[:, : self.neighbours]
        return self.means[near].mean(1), self.balance[near].mean(1)

    def save(self, path: str | Path) -> None:
        """Write :data:`REFERENCE_FILE`: the features' means in float16 (standardised statistics, well
        inside its range), the speaker features' means as those less a shift of low rank in two float32
        factors (the shift is the predicted emotions' offsets, ``x - c = p · class_offsets``: its rank is
        at most the number of classes), the balances and the neighbour count."""
        x, c = self.means[:, : self.dim], self.means[:, self.dim :]
        u, s, vt = np.linalg.svd(x - c, full_matrices=False)
        rank = int((s > 1e-5 * s[0]).sum()) if s.size and s[0] > 0 else 0
        np.savez(Path(path), means=x.astype(np.float16), shift_weights=(u[:, :rank] * s[:rank]).astype(np.float32),
                 shift_basis=vt[:rank].astype(np.float32), balance=self.balance.astype(np.float32),
                 neighbours=np.array(self.neighbours))

    @classmethod
    def load(cls, source: str | Path | bytes, name: str | None = None) -> "SpeakerReference":
        """A reference written by :meth:`save` (or by earlier versions, with both means in ``means``), from a
        path or its (already verified) bytes; ``name`` names it in errors."""
        name = name or str(source)
        try:
            with np.load(io.BytesIO(source) if isinstance(source, bytes) else Path(source), allow_pickle=False) as data:
                means, balance, neighbours = data["means"].astype(np.float64), data["balance"], int(data["neighbours"])
                if "shift_basis" in data.files:
                    means = np.concatenate([means, means - data["shift_weights"].astype(np.float64) @ data["shift_basis"]], axis=1)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AdaptationError(f"{name} is not a speaker reference ({type(exc).__name__})") from None
        try:
            return cls(means, balance, neighbours)
        except AdaptationError as exc:
            raise AdaptationError(f"{name}: {exc}") from None


def evidence(features: np.ndarray, speaker_features: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Rows [n, 2F + C] that a speaker's state sums: features [n, F], speaker features [n, F] and
    predicted probabilities [n, C] side by side."""
    x, c, p = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (features, speaker_features, probs))
    if x.shape != c.shape or len(p) != len(x) or p.ndim != 2 or x.ndim != 2:
        raise AdaptationError(f"features {x.shape}, speaker features {c.shape} and probs {p.shape} do not fit")
    return np.concatenate([x, c, p], axis=1)


def mixing_weight(mean_probs: np.ndarray, balance: float | np.ndarray) -> np.ndarray:
    """``a`` of the module doc: ``balance`` (a number, or one per row) times the normalised entropy of
    ``mean_probs`` [..., C]."""
    p = np.clip(np.asarray(mean_probs, dtype=np.float64), 0.0, None)
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-12)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1) / np.log(max(p.shape[-1], 2))
    return np.asarray(balance, dtype=np.float64) * entropy


def offsets_from_sums(sums: np.ndarray, weights: np.ndarray, dim: int, tau: float, balance: float,
                      reference: SpeakerReference | None = None) -> np.ndarray:
    """Offsets [m, F] from summed :func:`evidence` rows [m, 2F + C] and summed weights [m] (zeros
    where nothing was heard); with a ``reference``, measured against each speaker's nearest training
    speakers, with their balance instead of ``balance``, and scaled by that balance."""
    sums, weights = np.atleast_2d(np.asarray(sums, dtype=np.float64)), np.atleast_1d(np.asarray(weights, dtype=np.float64))
    if sums.shape[1] <= 2 * dim or len(weights) != len(sums):
        raise AdaptationError(f"evidence sums {sums.shape} and weights {weights.shape} do not fit features of width {dim}")
    heard = weights > 0
    x, c, p = sums[:, :dim], sums[:, dim : 2 * dim], sums[:, 2 * dim :]
    trust = 1.0
    if reference is not None:
        near, balance = reference.nearest(x / np.where(heard, weights, 1.0)[:, None])
        x, c = x - weights[:, None] * near[:, :dim], c - weights[:, None] * near[:, dim:]
        # speakers like this one each spoke in few emotions: their mean may be their emotion, so adapt less
        trust = balance[:, None]
    a = np.where(heard, mixing_weight(p, balance), 0.0)[:, None]
    return trust * (a * x + (1 - a) * c) / (weights[:, None] + float(tau))


def speaker_offset(rows: np.ndarray, dim: int, tau: float, balance: float, weights: np.ndarray | None = None,
                   reference: SpeakerReference | None = None) -> np.ndarray:
    """Evidence rows [n, 2F + C] of one speaker (optional weights [n]) -> offset [F] (zeros for n = 0)."""
    e = np.asarray(rows, dtype=np.float64)
    if e.ndim != 2:
        raise AdaptationError(f"evidence must be [n, 2F + C], got shape {e.shape}")
    w = np.ones(len(e)) if weights is None else np.asarray(weights, dtype=np.float64)
    return offsets_from_sums((w @ e)[None], np.array([w.sum()]), dim, tau, balance, reference)[0]


def speaker_offsets(rows: np.ndarray, speakers: Sequence[str], k: int | None, dim: int, tau: float, balance: float,
                    seed: int = 0, reference: SpeakerReference | None = None) -> np.ndarray:
    """Offsets [N, F] for every utterance: the :func:`speaker_offset` of ``k`` utterances drawn at
    random (without replacement, seeded) from its speaker's rows of ``rows`` [N, 2F + C]
    (``k=None`` or ``k`` >= their number: all of them; ``k=0``: zeros, the strict protocol).
    One draw per speaker, shared by its utterances, as a robot that has heard k utterances of them."""
    e = np.asarray(rows, dtype=np.float64)
    speakers = np.asarray(speakers)
    if len(speakers) != len(e):
        raise AdaptationError(f"{len(e)} evidence rows but {len(speakers)} speaker ids")
    out = np.zeros((len(e), dim))
    if k == 0:
        return out
    rng = np.random.default_rng(seed)
    for spk in sorted(set(speakers.tolist())):
        idx = np.flatnonzero(speakers == spk)
        chosen = idx if k is None or k >= len(idx) else rng.choice(idx, size=k, replace=False)
        out[idx] = speaker_offset(e[chosen], dim, tau, balance, reference=reference)
    return out


def output_evidence(out: dict[str, np.ndarray]) -> np.ndarray:
    """:func:`evidence` rows of a speaker-adaptive graph's outputs (``speaker_probs``, or ``probs``
    for a graph exported before it existed)."""
    return evidence(out["features"], out["speaker_features"], out.get("speaker_probs", out["probs"]))


def utterance_evidence(engine, audio: Sequence[np.ndarray], max_seconds: float = 30.0) -> np.ndarray:
    """Evidence rows [N, 2F + C] of whole utterances (float32 16 kHz arrays): the strict outputs of
    ``engine`` (a speaker-adaptive :class:`~physioser.runtime.Engine`) on each one's first ``max_seconds``."""
    if not engine.adaptation_dim:
        raise AdaptationError(f"{engine.source} is not speaker-adaptive (no adaptation metadata)")
    limit = int(max_seconds * engine.sample_rate)
    return np.concatenate([output_evidence(engine.infer(np.asarray(a, dtype=np.float32)[None, :limit])) for a in audio])


def protocol_offsets(engine, rows: np.ndarray, speakers: Sequence[str], k: int | None, seed: int = 0) -> np.ndarray:
    """:func:`speaker_offsets` float32 [N, F] with the shrinkage and balance of the engine's metadata,
    measured against the engine's :class:`SpeakerReference` where its model carries one."""
    settings = engine.metadata["adaptation"]
    return speaker_offsets(rows, speakers, k, engine.adaptation_dim, float(settings["tau"]),
                           float(settings.get("balance", 0.0)), seed=seed, reference=engine.speaker_reference).astype(np.float32)


class SpeakerAdaptation:
    """Running speaker offsets for a stream: ``update(speaker, row, weight)`` adds one window's
    :func:`evidence` (:func:`output_evidence` of the graph's outputs); ``offset(speaker)`` is the offset
    of the module doc from everything heard of that speaker (zeros for an unknown speaker or ``None``).

    Args:
        dim: width F of the features. classes: number C of emotion classes. tau: shrinkage in
            utterances; balance: emotion balance of the training speakers (see the module doc).
        reference: the model's training speakers, that offsets are measured against (None: the
            training set's origin and ``balance``).
        max_speakers: speakers kept; the least recently used is evicted beyond it.
        horizon: utterance weight after which older speech is forgotten exponentially (a running
            estimate that follows a voice over a long session); None keeps the plain sums.
    """

    def __init__(self, dim: int, classes: int, tau: float, balance: float = 0.0, *, max_speakers: int = 16,
                 horizon: float | None = 200.0, reference: SpeakerReference | None = None) -> None:
        if (dim < 1 or classes < 2 or tau < 0 or not 0 <= balance <= 1 or max_speakers < 1
                or (horizon is not None and horizon <= 0)):
            raise AdaptationError(f"bad adaptation settings: dim={dim}, classes={classes}, tau={tau}, balance={balance}, "
                                  f"max_speakers={max_speakers}, horizon={horizon}")
        if reference is not None and reference.dim != dim:
            raise AdaptationError(f"a speaker reference of width {reference.dim} does not fit features of width {dim}")
        self.dim, self.classes, self.tau, self.balance = int(dim), int(classes), float(tau), float(balance)
        self.reference = reference
        self.max_speakers, self.horizon = int(max_speakers), horizon
        self._state: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()  # speaker -> (evidence sum, weight)

    @property
    def width(self) -> int:
        """Width 2F + C of one evidence row."""
        return 2 * self.dim + self.classes

    def __len__(self) -> int:
        return len(self._state)

    @property
    def speakers(self) -> list[str]:
        """Known speakers, least recently used first."""
        return list(self._state)

    def weight(self, speaker: str | None) -> float:
        """Utterance weight heard from ``speaker`` (0 when unknown)."""
        return 0.0 if speaker is None or speaker not in self._state else self._state[speaker][1]

    def offset(self, speaker: str | None) -> np.ndarray:
        if speaker is None or speaker not in self._state:
            return np.zeros(self.dim, dtype=np.float32)
        total, weight = self._state[speaker]
        self._state.move_to_end(speaker)
        return offsets_from_sums(total[None], np.array([weight]), self.dim, self.tau, self.balance,
                                 self.reference)[0].astype(np.float32)

    def update(self, speaker: str | None, row: np.ndarray, weight: float = 1.0) -> None:
        """Add one utterance's (or window's, with its share as ``weight``) :func:`evidence` row [2F + C]."""
        if speaker is None:
            return
        e = np.asarray(row, dtype=np.float64).reshape(-1)
        if e.shape[0] != self.width or not np.all(np.isfinite(e)):
            raise AdaptationError(f"an evidence row must be {self.width} finite numbers (features, speaker features and "
                                  f"probs: {self.dim}, {self.dim} and {self.classes}), got {e.shape[0]}")
        total, seen = self._state.pop(speaker, (np.zeros(self.width), 0.0))
        if self.horizon is not None and seen + weight > self.horizon:
            keep = max(self.horizon - weight, 0.0) / seen
            total, seen = total * keep, seen * keep
        self._state[speaker] = (total + weight * e, seen + weight)
        while len(self._state) > self.max_speakers:
            self._state.popitem(last=False)

    def reset(self, speaker: str | None = None) -> None:
        """Forget one speaker, or every speaker (``None``)."""
        if speaker is None:
            self._state.clear()
        else:
            self._state.pop(speaker, None)

    def save(self, path: str | Path) -> None:
        """Write the state to a ``.npz`` file (only when asked: nothing is persisted otherwise)."""
        names = list(self._state)
        sums = np.stack([self._state[n][0] for n in names]) if names else np.zeros((0, self.width))
        weights = np.array([self._state[n][1] for n in names], dtype=np.float64)
        meta = json.dumps({"dim": self.dim, "classes": self.classes, "tau": self.tau, "balance": self.balance, "speakers": names})
        np.savez(Path(path), sums=sums, weights=weights, meta=np.array(meta))

    def load(self, path: str | Path) -> None:
        """Replace the state with one written by :meth:`save` (same width and classes)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                sums, weights = data["sums"], data["weights"]
        except (OSError, ValueError, KeyError) as exc:
            raise AdaptationError(f"{path} is not a saved speaker adaptation state ({type(exc).__name__})") from None
        names = meta.get("speakers", []) if isinstance(meta, dict) else []
        if (meta.get("dim") != self.dim or meta.get("classes") != self.classes or sums.shape != (len(names), self.width)
                or weights.shape != (len(names),)):
            raise AdaptationError(f"{path}: saved state does not fit features of width {self.dim} and {self.classes} classes")
        self._state = OrderedDict((str(n), (sums[i].astype(np.float64), float(weights[i]))) for i, n in enumerate(names))
        while len(self._state) > self.max_speakers:
            self._state.popitem(last=False)


FEATURE_THRESHOLD = 0.6
""":class:`VoiceIds`' least cosine to a voice's centroid when the vectors are the model's own statistics."""


class VoiceIds:
    """Names the voice of a window when the robot gives no speaker identity: the nearest running
    centroid (cosine of unit-length vectors, e.g. the graph's ``features`` output) at or above
    ``threshold``, else a new ``voice-N``; at most ``max_voices`` kept (least recently heard evicted).

    A cheap identity from the emotion model's own statistics, not a speaker-verification model:
    on the five corpora here (whisper-tiny.en statistics, standardised), an utterance's cosine to
    its own speaker's centroid was >= 0.6 for 62 % of utterances and to another speaker's of the
    same corpus for 15 % (docs/adaptation.md)."""

    def __init__(self, threshold: float = FEATURE_THRESHOLD, max_voices: int = 16) -> None:
        if not -1.0 <= threshold <= 1.0 or max_voices < 1:
            raise AdaptationError(f"bad voice id settings: threshold={threshold}, max_voices={max_voices}")
        self.threshold, self.max_voices = float(threshold), int(max_voices)
        self._centroids: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()
        self._next = 1

    def identify(self, vector: np.ndarray) -> str:
        v = np.asarray(vector, dtype=np.float64).reshape(-1)
        norm = np.linalg.norm(v)
        if not np.isfinite(norm) or norm == 0:
            raise AdaptationError("a voice vector must be finite and non-zero")
        v = v / norm
        best, score = None, -np.inf
        for name, (total, _) in self._centroids.items():
            s = float(v @ total / max(np.linalg.norm(total), 1e-12))
            if s > score:
                best, score = name, s
        if best is None or score < self.threshold:
            best, total, count = f"voice-{self._next}", np.zeros_like(v), 0.0
            self._next += 1
        else:
            total, count = self._centroids.pop(best)
        self._centroids[best] = (total + v, count + 1)
        while len(self._centroids) > self.max_voices:
            self._centroids.popitem(last=False)
        return best

    def reset(self) -> None:
        self._centroids.clear()
        self._next = 1
