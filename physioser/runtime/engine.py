"""Inference engine: an onnxruntime session built from a hardware profile.

``Engine.from_path(path, profile)`` takes an exported ``.onnx`` graph, a model directory written
by ``physioser train`` (``model.safetensors`` + ``config.yaml``, handed to the training layer,
which builds its graph or runs the PyTorch fallback), or ``None`` for the shipped default model.
Before use it checks the graph's opset, inputs, outputs and metadata against the contract
(:mod:`physioser.runtime.contract`, ``export/ONNX_CONTRACT.md``) and raises :class:`EngineError`
naming the file and the problem. ``engine.infer(waveforms [B, S] float32, lengths [B] int64)``
returns numpy arrays ``logits``, ``probs``, ``embedding``, ``valence`` and ``arousal`` (from the
model when it predicts them, else from the class probabilities through the circumplex mapping
:data:`CIRCUMPLEX`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from physioser.paths import DEFAULT_BACKBONE
from physioser.runtime.adaptation import REFERENCE_FILE, AdaptationError, SpeakerReference
from physioser.runtime.bundle import METADATA, default_bundle_dir, is_bundle, read_bundle, ships_default
from physioser.runtime.contract import (ADAPTATION_INPUT, REQUIRED_METADATA, EngineError, check_graph, metadata_strings,
                                         parse_metadata)
from physioser.runtime.graph import read_graph
from physioser.runtime.integrity import read_verified
from physioser.runtime.profiles import HardwareProfile, load_profile
from physioser.runtime.voice import VOICE_GRAPH, VoiceEncoder

log = logging.getLogger(__name__)

# (valence, arousal) in [-1, 1] per canonical class: positions on Russell's circumplex of affect
# (Russell 1980, Fig. 2; the same placement as the dimensional/categorical maps in e.g. ROS4HRI's
# hri_msgs/Expression documentation). A model without a valence/arousal head reports the
# probability-weighted mean of these points. Names not listed count as (0, 0).
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "calm": (0.4, -0.6),
    "happy": (0.8, 0.5),
    "surprised": (0.4, 0.8),
    "angry": (-0.6, 0.8),
    "fearful": (-0.6, 0.6),
    "disgust": (-0.7, 0.3),
    "sad": (-0.7, -0.4),
    "bored": (-0.3, -0.8),
}
_ALIASES = {"joy": "happy", "happiness": "happy", "anger": "angry", "sadness": "sad", "fear": "fearful",
            "surprise": "surprised", "disgusted": "disgust", "boredom": "bored"}


MAX_ABS = 2.0
"""Largest |sample| accepted. Audio is float in [-1, 1]; up to 2 leaves room for the overshoot of
resampled or mixed audio, while int16 PCM passed as float (or a wrong gain) is refused instead of
driving the model to meaningless or non-finite outputs."""


def check_peak(x: np.ndarray, what: str) -> None:
    """Raise EngineError if the finite float array ``x`` exceeds :data:`MAX_ABS`."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > MAX_ABS:
        raise EngineError(f"{what} reach {peak:.4g}; audio must be float in [-1, 1] (int16 PCM: divide by 32768)")


def circumplex_point(name: str) -> tuple[float, float]:
    return CIRCUMPLEX.get(_ALIASES.get(name.lower(), name.lower()), (0.0, 0.0))


def valence_arousal(probs: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Probability-weighted circumplex position: ``probs [..., C]`` -> (valence [...], arousal [...])."""
    points = np.array([circumplex_point(n) for n in class_names], dtype=np.float64)  # [C, 2]
    # an elementwise sum rather than a BLAS product: a row's result must not depend on the batch it is in
    va = (np.asarray(probs, dtype=np.float64)[..., :, None] * points).sum(axis=-2)
    return va[..., 0].astype(np.float32), va[..., 1].astype(np.float32)


def session_options(intra_op_threads: int, inter_op_threads: int = 1):
    """The onnxruntime session options physioser runs with (engine, export check, benchmark).

    All graph optimisations; sequential execution (the VAP branch and the backbone are independent
    subgraphs, but with as many threads as cores running them side by side only oversubscribes:
    measured slower on 2 cores); ``session.force_spinning_stop``: the intra-op workers spin while a
    call runs but go to sleep when it returns. A streaming engine is called every hop (0.5 s), and
    by default the workers keep spinning until the next call: on this 2-core machine that burnt
    ~80 ms of CPU per 2 s window (vs ~38 ms with the option) at equal latency, and starved any other
    process (or a PyTorch model timed right after) of the second core.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    opts.log_severity_level = 3
    return opts


def profile_providers(profile: HardwareProfile) -> list[tuple[str, dict]]:
    """The execution providers (with their options) of ``profile`` that this onnxruntime build has, in the
    profile's order; the CPU when it has none of them (the others are logged as skipped)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    providers = [(p.name, {k: str(v) if isinstance(v, bool) else v for k, v in p.options.items()})
                 for p in profile.providers if p.name in available]
    skipped = [p.name for p in profile.providers if p.name not in available]
    if skipped:
        log.warning("profile %s: execution providers %s are not in this onnxruntime build (it has %s); skipped",
                    profile.name, skipped, sorted(available))
    return providers or [("CPUExecutionProvider", {})]


class OrtBackend:
    """An onnxruntime session over one graph checked against the contract.

    ``metadata``: the graph's contract metadata as a bundle states it (it must agree with the
    graph's own); ``sha256``: the digest the graph's bytes must have (from the bundle's SHA256SUMS,
    checked on the very bytes the session is built from).
    """

    name = "onnxruntime"

    def __init__(self, path: Path, profile: HardwareProfile, *, metadata: dict[str, Any] | None = None,
                 sha256: str | None = None):
        import onnxruntime as ort

        blob = read_verified(path, sha256)
        try:
            graph = read_graph(blob)
        except ValueError as exc:
            raise EngineError(f"{path} is not a valid ONNX model (truncated or corrupt?): {exc}") from exc
        check_graph(graph, path)
        self.metadata = parse_metadata(graph.metadata, str(path))
        if metadata is not None:
            stated = parse_metadata(metadata_strings(metadata), f"{path.parent / METADATA}")
            differ = [k for k in REQUIRED_METADATA if stated[k] != self.metadata[k]]
            if differ:
                raise EngineError(f"{path.parent / METADATA} and the graph {path.name} disagree on {differ}")
            self.metadata = stated
        logits_dim = graph.outputs["logits"]
        if logits_dim is not None and logits_dim != len(self.metadata["class_names"]):
            raise EngineError(
                f"{path}: logits have {logits_dim} classes but metadata names {len(self.metadata['class_names'])}"
            )
        opts = session_options(profile.intra_op_threads, profile.inter_op_threads)
        try:
            self.session = ort.InferenceSession(blob, opts, providers=profile_providers(profile))
        except Exception as exc:
            raise EngineError(f"onnxruntime could not load {path}: {exc}") from exc
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.adaptive = ADAPTATION_INPUT in {i.name for i in self.session.get_overridable_initializers()} | {
            i.name for i in self.session.get_inputs()}
        self.providers = self.session.get_providers()
        self.path = path

    def run(self, waveforms: np.ndarray, lengths: np.ndarray, speaker_offset: np.ndarray | None = None) -> dict[str, np.ndarray]:
        feed = {"waveform": waveforms, "lengths": lengths}
        if speaker_offset is not None:
            feed[ADAPTATION_INPUT] = speaker_offset
        try:
            values = self.session.run(None, feed)
        except Exception as exc:  # onnxruntime's own exception types: a graph that loads but cannot run
            raise EngineError(f"{self.path}: onnxruntime failed on input {waveforms.shape}: {exc}") from exc
        return dict(zip(self.output_names, values))


class Engine:
    """Runs a physioser model on batches of 16 kHz waveforms (see module docstring)."""

    def __init__(self, backend, profile: HardwareProfile, source: str):
        self._backend = backend
        self.profile = profile
        if backend.metadata.get("backbone") not in (None, profile.backbone):
            log.info("profile %s is measured best with backbone %s; this model runs %s (docs/backbones.md)",
                     profile.name, profile.backbone, backend.metadata.get("backbone"))
        self.source = source
        self.metadata: dict[str, Any] = backend.metadata
        self.class_names: list[str] = list(self.metadata["class_names"])
        self.sample_rate: int = int(self.metadata["sample_rate"])
        self.min_samples: int = int(self.metadata["min_samples"])
        self.voice_graph: tuple[Path, str] | None = None  # a bundle's speaker encoder and its sha256
        self._voice_encoder: VoiceEncoder | None = None
        self.speaker_reference: SpeakerReference | None = None  # the training speakers adaptation measures against

    def read_speaker_reference(self, path: Path, sha256: str | None = None) -> None:
        """Take the model's :class:`SpeakerReference` from ``path`` (its bytes checked against ``sha256``
        where SHA256SUMS lists it)."""
        try:
            reference = SpeakerReference.load(read_verified(path, sha256, "speaker reference"), str(path))
        except AdaptationError as exc:
            raise EngineError(str(exc)) from None
        if reference.dim != self.adaptation_dim:
            raise EngineError(f"{path}: a speaker reference of width {reference.dim} does not fit {self.source}, whose "
                              f"speaker offset has width {self.adaptation_dim}")
        self.speaker_reference = reference

    def voice_encoder(self) -> VoiceEncoder | None:
        """The bundle's speaker encoder (:mod:`physioser.runtime.voice`), loaded on first use; None without one."""
        if self._voice_encoder is None and self.voice_graph is not None:
            path, digest = self.voice_graph
            options = session_options(self.profile.intra_op_threads, self.profile.inter_op_threads)
            self._voice_encoder = VoiceEncoder(path, options, profile_providers(self.profile), sha256=digest)
        return self._voice_encoder

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def providers(self) -> list[str]:
        return list(self._backend.providers)

    @classmethod
    def from_path(cls, model_path: str | Path | None = None, profile: str | Path | HardwareProfile | None = None,
                  *, allow_profile_path: bool = False) -> "Engine":
        """Open a model bundle, a bare ``.onnx`` graph, or (``None`` / ``"default"``) the default bundle.

        ``profile``: an installed profile's name, a :class:`HardwareProfile`, or a YAML path when
        ``allow_profile_path`` (see :func:`load_profile`).

        A training checkpoint (``model.safetensors`` + ``config.yaml``) is refused with a pointer to
        ``physioser export``; :func:`physioser.export.open_engine` runs one directly (PyTorch).
        """
        prof = load_profile(profile, allow_path=allow_profile_path)
        if not _onnxruntime_available():
            raise EngineError("onnxruntime is not installed (pip install onnxruntime)")
        if model_path is None or str(model_path) == "default":
            path = default_bundle_dir(prof.backbone if ships_default(prof.backbone) else None)
            if not is_bundle(path) and is_bundle(default_bundle_dir()):
                log.info("the %s default model for profile %s is not built (`physioser export --checkpoint default "
                         "--profile %s`); running the %s default", prof.backbone, prof.name, prof.name, DEFAULT_BACKBONE)
                path = default_bundle_dir()
            if not is_bundle(path):
                raise EngineError(f"the default model's bundle is not built yet ({path}): build it with "
                                  "`physioser export --checkpoint default` (needs pip install 'physioser[train]'), "
                                  "or pass --model BUNDLE")
        else:
            path = Path(model_path)
            if not path.exists():
                raise EngineError(f"model file {path} does not exist")
        if path.is_file() and path.suffix == ".onnx":
            return cls(OrtBackend(path, prof), prof, str(path))
        if is_bundle(path):
            graph, metadata, digests = read_bundle(path)
            engine = cls(OrtBackend(graph, prof, metadata=metadata, sha256=digests[graph.name]), prof, str(path))
            if VOICE_GRAPH in digests:
                engine.voice_graph = (path / VOICE_GRAPH, digests[VOICE_GRAPH])
            if REFERENCE_FILE in digests:
                engine.read_speaker_reference(path / REFERENCE_FILE, digests[REFERENCE_FILE])
            return engine
        if (path.parent if path.is_file() else path).joinpath("config.yaml").is_file():
            raise EngineError(f"{path} is a training checkpoint, not a model bundle: export it with "
                              f"`physioser export --checkpoint {path} --out BUNDLE`")
        raise EngineError(f"{path} is neither a model bundle (a folder with {METADATA}) nor an .onnx graph")

    def check_sample_rate(self, sample_rate: int, name: str = "audio") -> None:
        if int(sample_rate) != self.sample_rate:
            raise EngineError(
                f"{name} is {sample_rate} Hz but the model takes {self.sample_rate} Hz; resample it first "
                "(physioser.audio.load_audio does)"
            )

    @property
    def adaptation_dim(self) -> int:
        """Width F of the speaker offset a speaker-adaptive model takes (metadata ``adaptation``); 0: none."""
        adaptation = self.metadata.get("adaptation")
        return int(adaptation["dim"]) if isinstance(adaptation, dict) and adaptation.get("dim") else 0

    def infer(self, waveforms: np.ndarray, lengths: np.ndarray | None = None, *, sample_rate: int | None = None,
              speaker_offset: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Run the model: ``waveforms`` float32 [B, S] (or [S]), ``lengths`` int64 [B] (default: all S);
        ``speaker_offset`` float32 [B, F] for a speaker-adaptive model (default: none, the strict outputs)."""
        if sample_rate is not None:
            self.check_sample_rate(sample_rate)
        x = np.asarray(waveforms)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[0] == 0:
            raise EngineError(f"waveforms must be [batch >= 1, samples] mono, got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise EngineError(f"waveforms must be float32 in [-1, 1], got {x.dtype} (convert integer PCM first)")
        with np.errstate(over="ignore"):  # float64 beyond the float32 range becomes Inf, refused below
            x = np.ascontiguousarray(x, dtype=np.float32)
        if lengths is None:
            lens = np.full(x.shape[0], x.shape[1], dtype=np.int64)
        else:
            lens = np.asarray(lengths)
            if lens.dtype.kind not in "iu":
                raise EngineError(f"lengths must be integers (int64 samples per row), got {lens.dtype}: {str(lengths)[:80]}")
            lens = lens.astype(np.int64).reshape(-1)
        if lens.shape[0] != x.shape[0]:
            raise EngineError(f"lengths has {lens.shape[0]} entries for a batch of {x.shape[0]}")
        if (lens > x.shape[1]).any() or (lens < self.min_samples).any():
            raise EngineError(
                f"lengths must lie in [{self.min_samples}, {x.shape[1]}] samples "
                f"({self.min_samples / self.sample_rate:.2f} s minimum), got {lens.tolist()}"
            )
        if not np.isfinite(x).all():
            raise EngineError("waveforms contain NaN or Inf (or float64 samples beyond the float32 range)")
        check_peak(x, "waveforms")
        if speaker_offset is None:
            out = self._backend.run(x, lens)
        else:
            offset = np.ascontiguousarray(speaker_offset, dtype=np.float32)
            if not self.adaptation_dim:
                raise EngineError(f"{self.source} is not speaker-adaptive (no adaptation metadata): it takes no speaker_offset")
            if offset.shape != (x.shape[0], self.adaptation_dim) or not np.isfinite(offset).all():
                raise EngineError(f"speaker_offset must be finite float32 [{x.shape[0]}, {self.adaptation_dim}], got shape {offset.shape}")
            out = self._backend.run(x, lens, offset)
        bad = [k for k, v in out.items() if not np.isfinite(v).all()]
        if bad:
            raise EngineError(f"{self.source}: the model returned NaN/Inf in {bad} for finite input")
        if "valence" not in out or "arousal" not in out:
            out["valence"], out["arousal"] = valence_arousal(out["probs"], self.class_names)
        return out


def _onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
