"""ONNX export: one graph from raw 16 kHz waveform to emotion outputs, verified after writing.

The contract (``export/ONNX_CONTRACT.md``): inputs ``waveform`` float32 [batch, samples] and
``lengths`` int64 [batch]; outputs ``logits`` [batch, classes], ``probs`` [batch, classes],
``embedding`` [batch, dim] (+ ``valence``, ``arousal`` [batch] when the model predicts them);
batch and samples are dynamic; opset >= 17; metadata properties listed in ``WRITTEN_METADATA``
(:mod:`physioser.runtime.contract`).

Library: :func:`export_onnx` works for any ``torch.nn.Module`` whose
``forward(waveform [B, S], lengths [B])`` returns a dict with (some of) those names or a tuple
``(logits, probs, embedding, ...)``; :func:`verify_onnx` checks a written graph (onnx checker,
onnxruntime parity on several lengths, latency); :func:`convert_precision` writes fp16 or int8
(dynamic quantisation of MatMul/Gemm only) variants.
:func:`add_voice_encoder` adds a bundle's speaker encoder (``voice.onnx``, :mod:`physioser.runtime.voice`):
resemblyzer's d-vector (:class:`~physioser.backbones.resemblyzer.DVector`) traced the same way and
checked against PyTorch.
Command: ``physioser export --checkpoint CKPT --out model.onnx [--profile ...] [--precision ...] [--voice-encoder]``.

The TorchScript exporter is pinned (``dynamo=False``): its ``dynamic_axes`` give dynamic batch and
length reliably, where the dynamo exporter's support for them is incomplete (notes/references §4).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

import physioser
from physioser.model.directory import load_checkpoint, torch_engine
from physioser.backbones.ct2 import CheckpointError
from physioser.backbones.whisper import PACKAGED
from physioser.paths import DEFAULT_BACKBONE, cache_dir, default_model_dir
from physioser.runtime.contract import (
    ADAPTATION_INPUT,
    INPUT_NAMES,
    OPSET,
    OUTPUT_ORDER,
    REQUIRED_OUTPUTS,
    WRITTEN_METADATA,
    GRAPH_VERSION,
    EngineError,
    default_metadata,
    metadata_strings,
    parse_metadata,
)
from physioser.runtime.engine import Engine, OrtBackend, session_options
from physioser.runtime import bundle
from physioser.runtime.adaptation import REFERENCE_FILE
from physioser.runtime.bundle import checkpoint_key
from physioser.runtime.integrity import sha256_file, verify_integrity, write_integrity
from physioser.runtime.profiles import HardwareProfile, load_profile
from physioser.runtime.voice import DVECTOR_THRESHOLD, VOICE_GRAPH, VOICE_INPUTS, VOICE_OUTPUT

log = logging.getLogger(__name__)

class ExportError(RuntimeError):
    """Export or its verification failed (the message says which step and why)."""


class _Outputs(torch.nn.Module):
    """Adapts a model's dict/tuple output to the fixed output order of the ONNX contract."""

    def __init__(self, model: torch.nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor, speaker_offset: torch.Tensor | None = None):
        out = self.model(waveform, lengths) if speaker_offset is None else self.model(waveform, lengths, speaker_offset)
        if isinstance(out, dict):
            return tuple(out[n] for n in self.names)
        return tuple(out[: len(self.names)])


def _output_names(model: torch.nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> tuple[str, ...]:
    with torch.no_grad():
        out = model(*example)
    if isinstance(out, dict):
        missing = [n for n in REQUIRED_OUTPUTS if n not in out]
        if missing:
            raise ExportError(f"model output dict lacks {missing}; it has {sorted(out)}")
        return tuple(n for n in OUTPUT_ORDER if n in out)
    if isinstance(out, (tuple, list)) and len(out) >= 3 and all(isinstance(t, torch.Tensor) for t in out[:3]):
        return REQUIRED_OUTPUTS
    raise ExportError(
        "model.forward(waveform, lengths) must return a dict with logits/probs/embedding "
        f"or a tuple (logits, probs, embedding, ...), got {type(out).__name__}"
    )


def probe_waveforms(lengths: Sequence[int], seed: int = 0, sample_rate: int = physioser.SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic voiced-like test signals (harmonics with a pitch glide + noise), zero-padded.

    Returns ``(waveforms float32 [B, max(lengths)], lengths int64 [B])``.
    """
    rng = np.random.default_rng(seed)
    n = max(lengths)
    out = np.zeros((len(lengths), n), dtype=np.float32)
    for i, length in enumerate(lengths):
        t = np.arange(length) / sample_rate
        f0 = 110.0 + 40.0 * i + 30.0 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.1 * t) ** 2)
        x = 0.1 * x + 0.01 * rng.standard_normal(length)
        out[i, :length] = x.astype(np.float32)
    return out, np.asarray(lengths, dtype=np.int64)


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    *,
    metadata: dict[str, Any],
    opset: int = OPSET,
    example_seconds: float = 2.0,
) -> Path:
    """Export ``model`` to one ONNX graph at ``path`` (fp32) and attach ``metadata``.

    ``metadata`` must hold ``class_names`` (list), ``backbone``, ``training_corpora`` (list);
    ``sample_rate``, ``window_s``, ``hop_s``, ``physioser_version``, ``precision`` and
    ``min_samples`` get defaults. Uses the TorchScript exporter (``dynamo=False``), whose
    ``dynamic_axes`` make batch and samples dynamic.
    """
    import onnx

    if opset < OPSET:
        raise ExportError(f"opset {opset} is below the contract's minimum {OPSET}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**default_metadata(), **metadata}
    missing = [k for k in WRITTEN_METADATA if k not in meta]
    if missing:
        raise ExportError(f"export metadata lacks {missing}")
    if not isinstance(meta["class_names"], (list, tuple)) or not meta["class_names"]:
        raise ExportError(f"metadata class_names must be a non-empty list, got {meta['class_names']!r}")

    was_training = model.training
    model.eval()
    n = int(example_seconds * physioser.SAMPLE_RATE)
    wave, lens = probe_waveforms([n, n * 3 // 4])
    example = (torch.from_numpy(wave), torch.from_numpy(lens))
    names = _output_names(model, example)
    dynamic = {"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}}
    dynamic.update({name: {0: "batch"} for name in names})
    input_names = list(INPUT_NAMES)
    adapt_dim = _adaptation_dim(model)
    if adapt_dim:  # speaker-adaptive: a third input, made optional (zeros) after export
        example = (*example, torch.zeros(len(lens), adapt_dim))
        input_names.append(ADAPTATION_INPUT)
        dynamic[ADAPTATION_INPUT] = {0: "batch"}
        meta["adaptation"] = {"dim": adapt_dim, "tau": float(model.adaptation_tau), "balance": float(model.speaker_balance)}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False is chosen on purpose (see module doc)
            # tracer/shape-inference notes; whether the graph is right is what verify_onnx's parity checks decide
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                _Outputs(model, names),
                example,
                str(path),
                input_names=input_names,
                output_names=list(names),
                dynamic_axes=dynamic,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many types; say which step failed
        raise ExportError(f"torch.onnx.export of {type(model).__name__} to {path} failed: {exc}") from exc
    finally:
        model.train(was_training)
    proto = onnx.load(str(path))
    if adapt_dim:
        _default_zero_input(proto, ADAPTATION_INPUT, adapt_dim)
    set_metadata(proto, meta)
    onnx.save(proto, str(path))
    return path


def _adaptation_dim(model: torch.nn.Module) -> int:
    """Width of the speaker offset a speaker-adaptive model takes (0: none)."""
    offsets = getattr(model, "class_offsets", None)
    return int(offsets.shape[1]) if getattr(model, "statistics", False) and offsets is not None else 0


def _default_zero_input(proto, name: str, dim: int) -> None:
    """Give graph input ``name`` a default of zeros [1, dim] (an initializer of the same name), so that
    feeding it is optional; the zeros broadcast over the batch."""
    from onnx import numpy_helper

    proto.graph.initializer.append(numpy_helper.from_array(np.zeros((1, dim), dtype=np.float32), name))


def set_metadata(proto, metadata: dict[str, Any]) -> None:
    """Replace the metadata_props of an ONNX ModelProto with ``metadata`` (lists as JSON)."""
    del proto.metadata_props[:]
    for key, value in metadata_strings(metadata).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _session(path: Path, threads: int = 2):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def ort_latency_ms(session, seconds: float = 2.0, runs: int = 20, warmup: int = 3, batch: int = 1) -> dict[str, float]:
    """p50/p95 wall-clock latency (ms) of one onnxruntime call on a ``seconds`` window."""
    wave, lens = probe_waveforms([int(seconds * physioser.SAMPLE_RATE)] * batch)
    feed = {"waveform": wave, "lengths": lens}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]}


def paired_latency_ratio(path: Path, reference: Path, seconds: float = 2.0, runs: int = 30) -> float:
    """Median over interleaved rounds of latency(path) / latency(reference) for one window (2 threads):
    calls made next to each other, so this VM's speed drifts cancel, unlike two separate timing loops."""
    from physioser.bench.timing import paired, time_rounds

    wave, lens = probe_waveforms([int(seconds * physioser.SAMPLE_RATE)])
    feed = {"waveform": wave, "lengths": lens}
    sessions = {"graph": _session(Path(path)), "reference": _session(Path(reference))}
    times = time_rounds({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}, runs)
    return paired(times["graph"], times["reference"])[1]


@dataclass
class VerifyReport:
    path: Path
    checker: str = "ok"
    parity: list[dict[str, float]] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)

    @property
    def max_abs_diff(self) -> float:
        return max(p["max_abs_diff_logits"] for p in self.parity)

    def lines(self) -> list[str]:
        out = [f"onnx checker: {self.checker}"]
        for p in self.parity:
            out.append(
                f"parity at {p['seconds']:.2f} s (batch 2, second row shorter): max |logits diff| = "
                f"{p['max_abs_diff_logits']:.2e}, max |probs diff| = {p['max_abs_diff_probs']:.2e}, "
                f"argmax agreement {p['argmax_agree']:.0%}"
            )
        if self.latency:
            out.append(
                f"onnxruntime latency, 2 s window, batch 1, 2 threads: p50 {self.latency['p50_ms']:.1f} ms, "
                f"p95 {self.latency['p95_ms']:.1f} ms"
            )
        return out


def verify_onnx(
    model: torch.nn.Module,
    path: str | Path,
    *,
    seconds: Sequence[float] = (1.0, 2.0, 3.7),
    atol: float | None = 1e-4,
    latency_runs: int = 20,
) -> VerifyReport:
    """Check an exported graph against its PyTorch model.

    onnx checker; onnxruntime vs PyTorch on each length in ``seconds`` (batch of two, the second
    row 70 % as long, so padding and ``lengths`` are exercised); raises :class:`ExportError` when
    the max abs logits difference exceeds ``atol`` (``None``: report only, for fp16/int8);
    latency p50/p95 for a 2 s window (``latency_runs=0`` skips it).
    """
    import onnx

    path = Path(path)
    report = VerifyReport(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"onnx checker rejected {path}: {exc}") from exc
    sess = _session(path)
    model.eval()
    for i, sec in enumerate(seconds):
        n = int(sec * physioser.SAMPLE_RATE)
        wave, lens = probe_waveforms([n, int(n * 0.7)], seed=i)
        with torch.no_grad():
            ref = model(torch.from_numpy(wave), torch.from_numpy(lens))
        ref_logits = (ref["logits"] if isinstance(ref, dict) else ref[0]).numpy()
        ref_probs = (ref["probs"] if isinstance(ref, dict) else ref[1]).numpy()
        logits, probs = sess.run(["logits", "probs"], {"waveform": wave, "lengths": lens})
        entry = {
            "seconds": float(sec),
            "max_abs_diff_logits": float(np.abs(logits.astype(np.float64) - ref_logits).max()),
            "max_abs_diff_probs": float(np.abs(probs.astype(np.float64) - ref_probs).max()),
            "argmax_agree": float(np.mean(logits.argmax(-1) == ref_logits.argmax(-1))),
        }
        report.parity.append(entry)
        if atol is not None and entry["max_abs_diff_logits"] > atol:
            raise ExportError(
                f"{path}: onnxruntime logits differ from PyTorch by {entry['max_abs_diff_logits']:.3e} "
                f"at {sec} s (limit {atol:.0e})"
            )
    if latency_runs:
        report.latency = ort_latency_ms(sess, 2.0, runs=latency_runs)
    return report


def convert_precision(src: str | Path, dst: str | Path, precision: str) -> Path:
    """Write an fp16 (I/O stays float32) or int8 (dynamic, MatMul/Gemm only) copy of ``src``."""
    import onnx

    src, dst = Path(src), Path(dst)
    if precision == "fp32":
        if src != dst:
            dst.write_bytes(src.read_bytes())
        return dst
    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    meta["precision"] = precision
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel

        proto = convert_float_to_float16(proto, keep_io_types=True)
        OnnxModel(proto).topological_sort()  # the converter appends its input casts at the end
        set_metadata(proto, meta)
        onnx.save(proto, str(dst))
    elif precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantiser warns about every constant it leaves alone
        try:
            quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        proto = onnx.load(str(dst))
        set_metadata(proto, meta)
        onnx.save(proto, str(dst))
    else:
        raise ExportError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    return dst


def cached_onnx(model_dir: Path) -> Path:
    """The verified ONNX graph of a model directory, exported into the cache on first use."""
    model_dir = Path(model_dir)
    verify_integrity(model_dir)
    out = cache_dir() / "onnx" / f"{model_dir.name}-{checkpoint_key(model_dir)}.onnx"
    digest = out.with_name(out.name + ".sha256")  # the graph's own hash, written with it
    if out.is_file():
        if digest.is_file() and digest.read_text().strip() == sha256_file(out):
            return out
        print(f"physioser: the cached graph {out} does not match its hash (corrupt or replaced); rebuilding it", file=sys.stderr)
    print(f"physioser: building the ONNX graph of {model_dir} into {out} (first use only) ...", file=sys.stderr)
    model, meta = load_checkpoint(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp.onnx")
    try:
        export_onnx(model, tmp, metadata=meta)
        verify_onnx(model, tmp, latency_runs=0)
        digest.write_text(sha256_file(tmp) + "\n")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def checkpoint_engine(model_dir: Path, profile: HardwareProfile, *, torch: bool = False, strict: bool = False) -> Engine:
    """An :class:`Engine` over a model directory: its cached ONNX graph, or the PyTorch model.

    ``torch``: run the PyTorch model. Otherwise the graph is built on first use; when that fails
    the PyTorch model runs instead (``strict``: raise :class:`EngineError`).
    """
    if torch:
        model, meta = load_checkpoint(model_dir)
        return _with_reference(torch_engine(model, meta, profile, source=str(model_dir)), model_dir)
    try:
        onnx_path = cached_onnx(model_dir)
    except ExportError as exc:
        if strict:
            raise EngineError(f"could not build the ONNX graph of {model_dir}: {exc}") from exc
        log.warning("could not build the ONNX graph of %s (%s); running the PyTorch model instead", model_dir, exc)
        model, meta = load_checkpoint(model_dir)
        return _with_reference(torch_engine(model, meta, profile, source=str(model_dir)), model_dir)
    return _with_reference(Engine(OrtBackend(onnx_path, profile), profile, str(onnx_path)), model_dir)


def _with_reference(engine: Engine, model_dir: Path) -> Engine:
    """``engine`` with the speaker reference of its model directory, where the directory holds one."""
    path = model_dir / REFERENCE_FILE
    if path.is_file():
        engine.read_speaker_reference(path, verify_integrity(model_dir).get(REFERENCE_FILE))
    return engine


def open_engine(model_path: str | Path | None = None, profile: str | Path | HardwareProfile | None = None,
                *, backend: str = "auto") -> Engine:
    """:meth:`Engine.from_path` that also runs training checkpoints and builds the default bundle.

    ``backend``: ``auto`` (onnxruntime; a checkpoint's graph is built into the cache on first use,
    the PyTorch model runs if that fails), ``onnxruntime`` (no fallback) or ``torch`` (the PyTorch
    model of a checkpoint; ``None`` means the shipped default checkpoint).
    """
    if backend not in ("auto", "onnxruntime", "torch"):
        raise EngineError(f"backend must be auto, onnxruntime or torch, got {backend!r}")
    prof = load_profile(profile)
    default = model_path is None or str(model_path) == "default"
    if default and backend != "torch":
        return Engine.from_path(build_default_bundle(profile_default(prof)), prof)
    path = default_model_dir(profile_default(prof)) if default else Path(model_path)
    if path.is_file() and path.name.endswith(".safetensors"):
        path = path.parent
    if path.is_dir() and (path / "config.yaml").is_file():
        return checkpoint_engine(path, prof, torch=backend == "torch", strict=backend == "onnxruntime")
    if backend == "torch":
        raise EngineError(f"{path}: backend 'torch' runs a training checkpoint (model.safetensors + config.yaml)")
    return Engine.from_path(path, prof)


def write_bundle(graph: Path, out: Path, *, model_dir: Path | None = None) -> Path:
    """Write the bundle ``out`` of an exported ``graph``: the graph, metadata.json (its contract
    metadata), the model card (``model_dir``'s own, else one from the metadata), ``model_dir``'s speaker
    reference where it has one, and SHA256SUMS."""
    import onnx

    proto = onnx.load(str(graph), load_external_data=False)
    metadata = parse_metadata({p.key: p.value for p in proto.metadata_props}, str(graph))
    metadata["graph_version"] = GRAPH_VERSION
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(graph, out / bundle.GRAPH)
    (out / bundle.METADATA).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    (out / bundle.CARD).write_text(model_card(model_dir, metadata), encoding="utf-8")
    (out / VOICE_GRAPH).unlink(missing_ok=True)  # a speaker encoder of an earlier export: add_voice_encoder adds one again
    (out / REFERENCE_FILE).unlink(missing_ok=True)
    if model_dir is not None and (model_dir / REFERENCE_FILE).is_file():
        shutil.copyfile(model_dir / REFERENCE_FILE, out / REFERENCE_FILE)
    write_integrity(out, bundle.bundle_files(out))
    return out


def model_card(model_dir: Path | None, metadata: dict[str, Any]) -> str:
    """A checkpoint's own ``MODEL_CARD.md``, else a short card written from the graph's metadata."""
    if model_dir is not None and (model_dir / bundle.CARD).is_file():
        return (model_dir / bundle.CARD).read_text(encoding="utf-8")
    corpora = ", ".join(metadata.get("training_corpora") or []) or "not recorded"
    return (f"# {metadata.get('model_name', 'physioser model')}\n\n"
            f"- classes: {', '.join(metadata['class_names'])}\n- backbone: {metadata['backbone']}\n"
            f"- training corpora: {corpora}\n- window {metadata['window_s']:g} s, hop {metadata['hop_s']:g} s\n"
            f"- exported by physioser {physioser.__version__} (graph version {GRAPH_VERSION})\n")


def profile_default(profile: HardwareProfile) -> str:
    """The backbone of the default model ``profile`` runs: its own (``backbone:``) where that default
    model ships and the backbone's weights are installed, else :data:`~physioser.paths.DEFAULT_BACKBONE`."""
    wanted = profile.backbone
    if wanted == DEFAULT_BACKBONE:
        return wanted
    if not bundle.ships_default(wanted):
        log.info("no default model ships for backbone %s (profile %s): running the %s default", wanted, profile.name, DEFAULT_BACKBONE)
        return DEFAULT_BACKBONE
    if bundle.is_bundle(bundle.default_bundle_dir(wanted)):
        return wanted
    try:
        PACKAGED[wanted]()
    except (CheckpointError, KeyError) as exc:
        log.info("profile %s runs the %s default model: the %s weights are not installed (%s)", profile.name, DEFAULT_BACKBONE,
                 wanted, exc)
        return DEFAULT_BACKBONE
    return wanted


def build_default_bundle(backbone: str | None = None) -> Path:
    """The bundle of the shipped default model (of ``backbone``: :func:`~physioser.paths.default_model_dir`)
    in the cache, built from its cached graph when missing."""
    out = bundle.default_bundle_dir(backbone)
    if bundle.is_bundle(out):
        return out
    model_dir = default_model_dir(backbone)
    graph = cached_onnx(model_dir)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_bundle(graph, tmp, model_dir=model_dir)
        try:
            tmp.replace(out)
        except OSError:
            if not bundle.is_bundle(out):  # not another process's finished bundle
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"physioser: built the default model bundle {out}", file=sys.stderr)
    return out


VOICE_PARITY_SECONDS = (0.5, 2.0, 3.7)
VOICE_PARITY_ATOL = 1e-4


def export_voice_encoder(path: Path, dvector: torch.nn.Module | None = None, *, opset: int = OPSET) -> float:
    """Write the d-vector graph ``waveform [B, S], lengths [B] -> dvector [B, 256]`` to ``path``
    (``dvector``: default resemblyzer's packaged weights) with its metadata, and check it; returns
    the parity figure of :func:`verify_voice_encoder`."""
    import onnx

    from physioser.backbones.resemblyzer import DVector, build_resemblyzer

    dvector = (dvector or DVector(build_resemblyzer())).eval()
    wave, lens = probe_waveforms([32000, 24000])
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes; the parity check below decides
            torch.onnx.export(dvector, (torch.from_numpy(wave), torch.from_numpy(lens)), str(path),
                              input_names=list(VOICE_INPUTS), output_names=[VOICE_OUTPUT],
                              dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, VOICE_OUTPUT: {0: "batch"}},
                              opset_version=opset, do_constant_folding=True, dynamo=False)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export of the speaker encoder to {path} failed: {exc}") from exc
    proto = onnx.load(str(path))
    set_metadata(proto, {"voice_encoder": "resemblyzer GE2E d-vector", "sample_rate": physioser.SAMPLE_RATE,
                         "dim": dvector.encoder.dim, "threshold": DVECTOR_THRESHOLD, "checkpoint": dvector.encoder.checkpoint_id,
                         "physioser_version": physioser.__version__})
    onnx.save(proto, str(path))
    return verify_voice_encoder(dvector, path)


def verify_voice_encoder(dvector: torch.nn.Module, path: Path) -> float:
    """Largest |difference| of onnxruntime's d-vectors from PyTorch's over batches of two clips
    (the second 70 % as long) of :data:`VOICE_PARITY_SECONDS`; raises ExportError above :data:`VOICE_PARITY_ATOL`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for i, seconds in enumerate(VOICE_PARITY_SECONDS):
        n = int(seconds * physioser.SAMPLE_RATE)
        wave, lens = probe_waveforms([n, int(n * 0.7)], seed=i)
        with torch.no_grad():
            want = dvector(torch.from_numpy(wave), torch.from_numpy(lens)).numpy()
        (got,) = session.run([VOICE_OUTPUT], {"waveform": wave, "lengths": lens})
        worst = max(worst, float(np.abs(got.astype(np.float64) - want).max()))
    if worst > VOICE_PARITY_ATOL:
        raise ExportError(f"{path}: onnxruntime d-vectors differ from PyTorch by {worst:.3e} (limit {VOICE_PARITY_ATOL:.0e})")
    return worst


def add_voice_encoder(bundle_dir: Path) -> float:
    """Export the speaker encoder into the bundle ``bundle_dir`` (verified first) and list it in its
    SHA256SUMS; returns the parity figure of :func:`verify_voice_encoder`."""
    verify_integrity(bundle_dir, required=True, covering=bundle.BUNDLE_FILES)
    staged = bundle_dir / f"{VOICE_GRAPH}.tmp"
    try:
        parity = export_voice_encoder(staged)
        staged.replace(bundle_dir / VOICE_GRAPH)
    finally:
        staged.unlink(missing_ok=True)
    write_integrity(bundle_dir, bundle.bundle_files(bundle_dir))
    return parity


def register(app: "typer.Typer") -> None:
    import typer

    @app.command("export")
    def export_cmd(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint folder (or its model.safetensors) written by `physioser train`, or 'default'"),
        out: Path = typer.Option(None, "--out", help="the model bundle (folder) to write; a path ending in .onnx writes the bare graph "
                                 "only; left out with --checkpoint default: the default bundle in the cache"),
        profile: str = typer.Option(None, "--profile", help="installed hardware profile name: default precision, window/hop"),
        allow_profile_path: bool = typer.Option(False, "--allow-profile-path", help="let --profile name a YAML file"),
        precision: str = typer.Option(None, "--precision", help="fp32 | fp16 | int8 (default: the profile's, else fp32)"),
        keep_slower: bool = typer.Option(False, "--keep-slower", help="keep an int8 graph even where it is not faster than fp32 on this CPU"),
        voice_encoder: bool = typer.Option(False, "--voice-encoder", help="add resemblyzer's speaker encoder (voice.onnx) to the bundle: "
                                           "with adapt_unnamed, the stream names voices by it (needs pip install 'physioser[backbones]')"),
    ) -> None:
        """Export a trained model to a model bundle (ONNX graph waveform -> logits/probs/embedding, metadata, model card, SHA256SUMS) and verify it."""
        import tempfile

        prof = load_profile(profile, allow_path=allow_profile_path) if profile else None
        precision = precision or (prof.precision if prof else "fp32")
        if precision not in ("fp32", "fp16", "int8"):
            raise typer.BadParameter(f"--precision must be fp32, fp16 or int8, got {precision!r}")
        default = str(checkpoint) == "default"
        backbone = profile_default(prof) if default and prof else None  # the profile's default model
        if out is None:
            if not default or precision != "fp32":
                raise typer.BadParameter("--out is required, except for a default bundle (--checkpoint default, fp32)")
            built = build_default_bundle(backbone)
            if voice_encoder:
                _add_voice_encoder(built)
            typer.echo(f"default model bundle: {built}")
            return
        model_dir = default_model_dir(backbone) if default else (checkpoint.parent if checkpoint.suffix == ".safetensors" else checkpoint)
        model, meta = load_checkpoint(model_dir)
        if prof:
            meta.update({k: v for k, v in (("window_s", prof.window_s), ("hop_s", prof.hop_s)) if v is not None})
        bare = out.suffix == ".onnx"
        if bare and voice_encoder:
            raise typer.BadParameter("--voice-encoder adds voice.onnx to a bundle: give --out a folder, not a .onnx file")
        with tempfile.TemporaryDirectory() as staging:
            graph = out if bare else Path(staging) / bundle.GRAPH
            fp32_path = graph if precision == "fp32" else graph.with_name(graph.stem + ".fp32.onnx")
            typer.echo(f"exporting {checkpoint} -> {fp32_path} (opset {OPSET}, dynamic batch and samples)")
            export_onnx(model, fp32_path, metadata=meta)
            report = verify_onnx(model, fp32_path)
            for line in report.lines():
                typer.echo("  " + line)
            if precision != "fp32":
                _lower_precision(model, fp32_path, graph, precision, keep_slower, keep_reference=bare)
            if not bare:
                write_bundle(graph, out, model_dir=model_dir)
                if voice_encoder:
                    _add_voice_encoder(out)
                typer.echo(f"model bundle {out}: {', '.join(bundle.bundle_files(out))}, SHA256SUMS")


def _add_voice_encoder(bundle_dir: Path) -> None:
    import typer

    typer.echo(f"speaker encoder {bundle_dir / VOICE_GRAPH}: max |d-vector diff| onnxruntime vs PyTorch {add_voice_encoder(bundle_dir):.2e}")


def _lower_precision(model, fp32_path: Path, out: Path, precision: str, keep_slower: bool, *, keep_reference: bool) -> None:
    import typer

    convert_precision(fp32_path, out, precision)
    low = verify_onnx(model, out, atol=None)
    typer.echo(f"{precision} graph {out}:")
    for line in low.lines():
        typer.echo("  " + line)
    ratio = paired_latency_ratio(out, fp32_path)
    speeds = f"{precision}/fp32 latency ratio {ratio:.2f}, paired over 30 interleaved rounds"
    faster = ratio < 0.95
    if precision == "int8" and not faster and not keep_slower:
        out.write_bytes(fp32_path.read_bytes())
        typer.echo(f"int8 is not faster here ({speeds}): kept the fp32 graph at {out} (pass --keep-slower to keep int8)")
    elif precision == "int8":
        typer.echo(f"int8 is {'faster' if faster else 'NOT faster'} here ({speeds}): kept at {out}; check its accuracy "
                   "on held-out data (the differences above are on synthetic probe signals)")
    else:
        typer.echo("  fp16 is meant for GPU execution providers; the CPU latency above is for reference only")
    if keep_reference:
        typer.echo(f"fp32 reference graph kept at {fp32_path}")
