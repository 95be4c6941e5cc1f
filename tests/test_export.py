"""ONNX export: round trip parity, dynamic axes, metadata, precision variants, errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from physioser.export import ExportError, convert_precision, export_onnx, probe_waveforms, verify_onnx
from physioser.runtime import Engine
from tests.tinyser import METADATA, TinySER, export_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("export"))


def test_round_trip_parity_at_three_lengths(tiny):
    model, path = tiny
    report = verify_onnx(model, path, seconds=(0.8, 2.0, 4.3), latency_runs=3)
    assert len(report.parity) == 3
    assert report.max_abs_diff <= 1e-4
    assert all(p["argmax_agree"] == 1.0 for p in report.parity)
    assert report.latency["p50_ms"] > 0


def test_graph_contract_dynamic_axes_and_opset(tiny):
    _, path = tiny
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    inputs = {i.name: i.type.tensor_type for i in proto.graph.input}
    assert set(inputs) == {"waveform", "lengths"}
    assert [d.dim_param for d in inputs["waveform"].shape.dim] == ["batch", "samples"]
    assert [o.name for o in proto.graph.output] == ["logits", "probs", "embedding"]
    # any batch and length run, and a padded row gives the same answer as the unpadded one
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wave, lens = probe_waveforms([24000, 9000, 16000], seed=3)
    batched = sess.run(["logits"], {"waveform": wave, "lengths": lens})[0]
    alone = sess.run(["logits"], {"waveform": wave[1:2, :9000], "lengths": lens[1:2]})[0]
    assert batched.shape == (3, 4)
    np.testing.assert_allclose(batched[1], alone[0], atol=1e-5)


def test_metadata_written_and_read_back_by_engine(tiny):
    _, path = tiny
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    for key in ("class_names", "sample_rate", "window_s", "hop_s", "backbone", "physioser_version", "training_corpora"):
        assert key in props, key
    engine = Engine.from_path(path)
    assert engine.class_names == METADATA["class_names"]
    assert engine.sample_rate == 16000
    assert engine.metadata["backbone"] == "tiny-logmel-cnn"
    assert engine.metadata["window_s"] == 2.0 and engine.metadata["hop_s"] == 0.5
    assert engine.metadata["training_corpora"] == []


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_precision_variants_verify_and_keep_metadata(tiny, tmp_path, precision):
    model, path = tiny
    out = convert_precision(path, tmp_path / f"m-{precision}.onnx", precision)
    report = verify_onnx(model, out, atol=None, latency_runs=0)
    assert all(p["argmax_agree"] == 1.0 for p in report.parity)
    assert report.max_abs_diff < 0.05
    engine = Engine.from_path(out)
    assert engine.metadata["precision"] == precision
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    if precision == "int8":
        assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
        assert "ConvInteger" not in ops  # dynamic quantisation is restricted to MatMul/Gemm
    else:
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(out)).graph.initializer)


def test_verify_catches_a_graph_that_disagrees_with_its_model(tiny):
    _, path = tiny
    other = TinySER(seed=1)  # different weights
    with pytest.raises(ExportError, match="differ from PyTorch"):
        verify_onnx(other, path, latency_runs=0)


def test_export_errors_are_clear(tmp_path):
    with pytest.raises(ExportError, match="lacks"):
        export_onnx(TinySER(), tmp_path / "m.onnx", metadata={"class_names": ["a"]})

    class NoProbs(torch.nn.Module):
        def forward(self, waveform, lengths):
            return {"logits": waveform[:, :4]}

    with pytest.raises(ExportError, match="lacks \\['probs', 'embedding'\\]"):
        export_onnx(NoProbs(), tmp_path / "m.onnx", metadata=METADATA)
    with pytest.raises(ExportError, match="opset 13"):
        export_onnx(TinySER(), tmp_path / "m.onnx", metadata=METADATA, opset=13)
