"""The runtime's own reading of an ONNX model agrees with the onnx package's."""

from __future__ import annotations

import onnx
import pytest

from physioser.runtime.graph import read_graph
from tests.tinyser import export_tiny


def _with_onnx(path):
    proto = onnx.load(str(path))
    dims = lambda v: v.type.tensor_type.shape.dim  # noqa: E731
    return (max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
            {i.name: (i.type.tensor_type.elem_type, len(dims(i))) for i in proto.graph.input},
            {o.name: (dims(o)[-1].dim_value if dims(o) and dims(o)[-1].HasField("dim_value") else None) for o in proto.graph.output},
            {m.key: m.value for m in proto.metadata_props})


def test_read_graph_matches_onnx(tmp_path):
    _, path = export_tiny(tmp_path)
    proto = onnx.load(str(path))
    proto.graph.output[0].type.tensor_type.shape.dim[-1].dim_value = 4  # a static last axis too
    onnx.save(proto, str(path))
    g = read_graph(path.read_bytes())
    assert (g.opset, g.inputs, g.outputs, g.metadata) == _with_onnx(path)


@pytest.mark.parametrize("blob", [b"", b"garbage", b"\x08\x07", b"\x3a\xff\xff\xff\x0f"])
def test_read_graph_refuses_what_is_not_a_model(blob):
    with pytest.raises(ValueError):
        read_graph(blob)
