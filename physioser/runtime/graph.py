"""What the runtime needs to know about a serialised ONNX model, read without the onnx package.

:func:`read_graph` walks the protobuf wire format of a ``ModelProto`` (onnx/onnx.proto: field
numbers below) and keeps the default-domain opset, the graph's inputs (element type, rank), its
outputs (static size of the last axis), the metadata properties and how many tensors keep their
data in other files (ONNX external data: in initializers, node attributes, subgraphs, functions);
tensor contents are skipped by their length, so a large graph is summarised in milliseconds. The runtime checks this
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
# where tensors sit: graph initializers / sparse initializers / nodes, a node's attributes, an
# attribute's tensor(s), graph(s) and sparse tensor(s), a sparse tensor's values and indices, the
# model's functions and their nodes; a tensor's external_data entries and data_location
_MODEL_FUNCTIONS, _FUNCTION_NODE = 25, 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTR_TENSOR, _ATTR_GRAPH, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _LOCATION_EXTERNAL = 13, 14, 1


@dataclass
class GraphSummary:
    opset: int = 0
    inputs: dict[str, tuple[int, int]] = field(default_factory=dict)
    """name -> (TensorProto element type, rank)"""
    outputs: dict[str, int | None] = field(default_factory=dict)
    """name -> static size of the last axis (None when dynamic or unknown)"""
    metadata: dict[str, str] = field(default_factory=dict)
    external_tensors: int = 0
    """tensors whose data lies in other files (ONNX external data), anywhere in the model"""


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


def _external_tensor(buf) -> bool:
    return any((n == _TENSOR_EXTERNAL_DATA) or (n == _TENSOR_DATA_LOCATION and v == _LOCATION_EXTERNAL)
               for n, v in _fields(_message(buf)))


def _sparse_external(buf) -> int:
    return sum(_external_tensor(v) for n, v in _fields(_message(buf)) if n in (_SPARSE_VALUES, _SPARSE_INDICES))


def _nodes_external(nodes) -> int:
    """External tensors in the attributes of these NodeProtos (subgraphs included)."""
    count = 0
    for node in nodes:
        for number, attr in _fields(_message(node)):
            if number != _NODE_ATTRIBUTE:
                continue
            for anum, aval in _fields(_message(attr)):
                if anum in (_ATTR_TENSOR, _ATTR_TENSORS):
                    count += _external_tensor(aval)
                elif anum in (_ATTR_SPARSE, _ATTR_SPARSES):
                    count += _sparse_external(aval)
                elif anum in (_ATTR_GRAPH, _ATTR_GRAPHS):
                    count += _graph_external(aval)
    return count


def _graph_external(buf) -> int:
    """External tensors of a GraphProto: initializers, sparse initializers, node attributes."""
    count, nodes = 0, []
    for number, value in _fields(_message(buf)):
        if number == _GRAPH_INITIALIZER:
            count += _external_tensor(value)
        elif number == _GRAPH_SPARSE:
            count += _sparse_external(value)
        elif number == _GRAPH_NODE:
            nodes.append(value)
    return count + _nodes_external(nodes)


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
        elif number == _MODEL_FUNCTIONS:
            summary.external_tensors += _nodes_external(v for n, v in _fields(_message(value)) if n == _FUNCTION_NODE)
        elif number == _MODEL_GRAPH:
            have_graph = True
            summary.external_tensors += _graph_external(value)
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
