"""What the runtime needs to know about a serialised ONNX model, read without the onnx package.

:func:`read_graph` walks the protobuf wire format of a ``ModelProto`` (onnx/onnx.proto: field
numbers below) and keeps the default-domain opset, the graph's inputs (element type, rank), its
outputs (static size of the last axis) and the metadata properties; initializers and nodes are
skipped by their length, so a large graph is summarised in milliseconds. The runtime checks this
summary against the contract before onnxruntime builds a session, and the deployable core does
not need the onnx package (its import alone took ~1.9 s of a cold start).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

# onnx.proto field numbers
_MODEL_OPSET, _MODEL_GRAPH, _MODEL_METADATA = 8, 7, 14
_OPSET_DOMAIN, _OPSET_VERSION = 1, 2
_GRAPH_INPUT, _GRAPH_OUTPUT = 11, 12
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_ELEM, _TENSOR_SHAPE = 1, 2
_SHAPE_DIM, _DIM_VALUE = 1, 1
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


@dataclass
class GraphSummary:
    opset: int = 0
    inputs: dict[str, tuple[int, int]] = field(default_factory=dict)
    """name -> (TensorProto element type, rank)"""
    outputs: dict[str, int | None] = field(default_factory=dict)
    """name -> static size of the last axis (None when dynamic or unknown)"""
    metadata: dict[str, str] = field(default_factory=dict)


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift >= 70:
            raise ValueError("malformed varint")


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one message: varints as int, everything else as bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = buf[i : i + size], i + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if number == 0 or i > len(buf):
            raise ValueError("truncated or malformed message")
        yield number, value


def _message(value) -> memoryview:
    if isinstance(value, int):
        raise ValueError("a message field holds a number")
    return value


def _text(value) -> str:
    return bytes(_message(value)).decode("utf-8", errors="replace")


def _value_info(buf) -> tuple[str, int, list[int | None]]:
    name, elem, dims = "", 0, []
    for number, value in _fields(_message(buf)):
        if number == _VALUE_NAME:
            name = _text(value)
        elif number == _VALUE_TYPE:
            for tnum, tval in _fields(_message(value)):
                if tnum != _TYPE_TENSOR:
                    continue
                for fnum, fval in _fields(_message(tval)):
                    if fnum == _TENSOR_ELEM and isinstance(fval, int):
                        elem = fval
                    elif fnum == _TENSOR_SHAPE:
                        dims = [next((v for n, v in _fields(_message(d)) if n == _DIM_VALUE and isinstance(v, int)), None)
                                for n, d in _fields(_message(fval)) if n == _SHAPE_DIM]
    return name, elem, dims


def read_graph(blob: bytes) -> GraphSummary:
    """Summarise a serialised ONNX ModelProto; ValueError when it is not one (truncated, corrupt)."""
    summary = GraphSummary()
    have_graph = False
    for number, value in _fields(memoryview(blob)):
        if number == _MODEL_OPSET:
            entry = dict(_fields(_message(value)))
            domain = _text(entry.get(_OPSET_DOMAIN, memoryview(b"")))
            version = entry.get(_OPSET_VERSION, 0)
            if domain in ("", "ai.onnx") and isinstance(version, int):
                summary.opset = max(summary.opset, version)
        elif number == _MODEL_GRAPH:
            have_graph = True
            for gnum, gval in _fields(_message(value)):
                if gnum == _GRAPH_INPUT:
                    name, elem, dims = _value_info(gval)
                    summary.inputs[name] = (elem, len(dims))
                elif gnum == _GRAPH_OUTPUT:
                    name, _, dims = _value_info(gval)
                    summary.outputs[name] = dims[-1] if dims else None
        elif number == _MODEL_METADATA:
            entry = dict(_fields(_message(value)))
            summary.metadata[_text(entry.get(_ENTRY_KEY, memoryview(b"")))] = _text(entry.get(_ENTRY_VALUE, memoryview(b"")))
    if not have_graph:
        raise ValueError("no graph in the model")
    return summary
