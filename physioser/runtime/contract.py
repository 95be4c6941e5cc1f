"""The ONNX contract between ``physioser export`` and the runtime (``export/ONNX_CONTRACT.md``).

One graph from raw 16 kHz waveform to emotion outputs: inputs ``waveform`` float32
[batch, samples] and ``lengths`` int64 [batch]; outputs ``logits``, ``probs``, ``embedding``
(+ ``valence``, ``arousal`` when the model predicts them); opset >= :data:`OPSET`; metadata
properties (lists as JSON) naming the classes, sample rate, streaming window and hop, backbone
and versions. The exporter writes :data:`WRITTEN_METADATA`; the runtime needs
:data:`REQUIRED_METADATA` and checks every graph with :func:`check_graph` and
:func:`parse_metadata`, raising :class:`EngineError` naming the file and the problem.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import physioser
from physioser.runtime.graph import GraphSummary

OPSET = 17
"""The lowest opset a graph may use (and the one the exporter writes)."""
INPUT_NAMES = ("waveform", "lengths")
ADAPTATION_INPUT = "speaker_offset"
"""Optional input of speaker-adaptive graphs: float32 [batch, F] subtracted from the standardised
statistics (an overridable initializer holding zeros: callers that feed only ``waveform`` and
``lengths`` get the strict, unadapted outputs)."""
OUTPUT_ORDER = ("logits", "probs", "embedding", "valence", "arousal", "features", "speaker_features", "speaker_probs")
REQUIRED_OUTPUTS = ("logits", "probs", "embedding")
REQUIRED_METADATA = ("class_names", "sample_rate", "window_s", "hop_s", "backbone", "physioser_version", "training_corpora")
"""metadata_props keys the runtime needs."""
WRITTEN_METADATA = (*REQUIRED_METADATA, "precision", "min_samples")
"""metadata_props keys every export writes."""
DEFAULT_WINDOW_S = 2.0
"""The analysis window of a stream, in seconds (the graph's ``window_s`` unless told otherwise)."""
DEFAULT_HOP_S = 0.5
"""The hop between two windows of a stream, in seconds."""
DEFAULT_MIN_SAMPLES = physioser.SAMPLE_RATE // 4
"""The shortest input (samples) a graph accepts when its metadata does not say."""
GRAPH_VERSION = 7
"""Version of the graphs ``physioser export`` builds for the same weights; part of the key of a
checkpoint's built graph and of the default bundle, so they are rebuilt when it changes.
2: VAP front end without Gather framing, float64 DFT on even/odd frame halves (same outputs).
3: VAP front end: float64 rank-Q cepstral maps, float32 past the DFT (same outputs).
4: Hann window folded into the DFT bases (same outputs).
5: float32 DFT for the minimum-phase front end, conv-folded QuaternionNorm centring, backbone and
   VAP segment means projected after pooling (logits move <= 1e-5).
6: the VAP encoder's 1-D convs exported as 2-D convs over a height-1 map (same outputs).
7: speaker-adaptive graphs also output ``speaker_probs`` (the probabilities without the offset), and
   ``speaker_features`` comes from them (the same with no offset fed)."""


class EngineError(ValueError):
    """A model that is missing, corrupt or outside the contract, or input the model cannot take."""


def default_metadata() -> dict[str, Any]:
    """The metadata an export writes unless the model says otherwise."""
    return {
        "sample_rate": physioser.SAMPLE_RATE,
        "window_s": DEFAULT_WINDOW_S,
        "hop_s": DEFAULT_HOP_S,
        "physioser_version": physioser.__version__,
        "precision": "fp32",
        "min_samples": DEFAULT_MIN_SAMPLES,
    }


def metadata_strings(metadata: dict[str, Any]) -> dict[str, str]:
    """Metadata as ONNX metadata_props values: strings as they are, everything else as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def parse_metadata(raw: dict[str, str], source: str) -> dict[str, Any]:
    """Decode and validate a graph's metadata_props (JSON values decoded)."""
    missing = [k for k in REQUIRED_METADATA if k not in raw]
    if missing:
        raise EngineError(f"{source}: model metadata lacks {missing} (export it with `physioser export`)")
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            meta[key] = value
            continue
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    names = meta["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise EngineError(f"{source}: metadata class_names must be a JSON list of names, got {raw['class_names']!r}")
    if len(set(names)) != len(names):
        raise EngineError(f"{source}: metadata class_names repeats a name: {names}")
    if meta["sample_rate"] != physioser.SAMPLE_RATE:
        raise EngineError(f"{source}: model expects {meta['sample_rate']} Hz audio; physioser runs at {physioser.SAMPLE_RATE} Hz")
    meta.setdefault("min_samples", DEFAULT_MIN_SAMPLES)
    checks = (("min_samples", int, 1, 60 * physioser.SAMPLE_RATE), ("window_s", float, 1e-3, 3600.0), ("hop_s", float, 1e-3, 3600.0))
    for key, kind, low, high in checks:
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (kind is int and value != int(value)) or not low <= value <= high:
            raise EngineError(f"{source}: metadata {key} must be {'an integer' if kind is int else 'a number'} in "
                              f"[{low:g}, {high:g}], got {raw.get(key, value)!r}")
    return meta


def check_graph(graph: GraphSummary, path: Path) -> None:
    """Check a graph against the contract: self-contained, opset, inputs and outputs."""
    if graph.external_tensors:  # onnxruntime would read them relative to the working directory
        raise EngineError(f"{path}: {graph.external_tensors} tensor(s) keep their data outside the graph (ONNX "
                          "external data); physioser runs self-contained graphs only (re-export with `physioser export`)")
    if graph.opset < OPSET:
        raise EngineError(f"{path}: opset {graph.opset} is below the required {OPSET}; re-export with `physioser export`")
    expect = {"waveform": (1, 2), "lengths": (7, 1)}  # name: (TensorProto elem type FLOAT/INT64, rank)
    for name, (elem, rank) in expect.items():
        if name not in graph.inputs:
            raise EngineError(f"{path}: graph input {name!r} missing; inputs are {sorted(graph.inputs)}")
        if graph.inputs[name] != (elem, rank):
            raise EngineError(
                f"{path}: input {name!r} must be {'float32' if elem == 1 else 'int64'} of rank {rank}"
            )
    missing = [o for o in REQUIRED_OUTPUTS if o not in graph.outputs]
    if missing:
        raise EngineError(f"{path}: graph outputs {missing} missing; outputs are {sorted(graph.outputs)}")
