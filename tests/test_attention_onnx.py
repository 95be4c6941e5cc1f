"""Every attention variant exports to ONNX (opset 17, legacy exporter, dynamic length) and matches onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from physioser.nn.attention import VARIANTS, build_attention

DIM, HEADS = 32, 4
OPTIONS = {  # small non-trivial settings so every mask/top-k path is in the graph
    "gqa": dict(kv_heads=2), "moh": dict(shared_heads=2, top_k=1), "gated": dict(mode="elementwise"),
    "affine": dict(alpha_ma_init=0.4), "single_head": dict(qk_dim=8), "neighborhood": dict(kernel_size=3, dilation=2),
    "streaming": dict(sink=2, recent=3, alpha_init=0.5), "strided": dict(block_size=2, local_blocks=1, vert_stride=2),
    "dynamic_mask": dict(keep_window=5, a_init=0.5), "differential": dict(depth=1), "softpag": dict(u=0.3),
}


class Exported(nn.Module):
    """(x, key_padding_mask) -> y: the ONNX-facing form of an attention module."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x, key_padding_mask):
        return self.attn(x, key_padding_mask=key_padding_mask)[0]


def export(module: nn.Module, path, dim: int) -> ort.InferenceSession:
    x = torch.randn(2, 12, dim)
    kpm = torch.zeros(2, 12, dtype=torch.bool)
    kpm[1, 9:] = True
    torch.onnx.export(Exported(module).eval(), (x, kpm), str(path), dynamo=False, opset_version=17,
                      input_names=["x", "key_padding_mask"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch", 1: "time"}, "key_padding_mask": {0: "batch", 1: "time"},
                                    "y": {0: "batch", 1: "time"}})
    onnx.checker.check_model(onnx.load(str(path)))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_onnx_export_matches_onnxruntime(name, tmp_path):
    torch.manual_seed(0)
    m = build_attention(name, dim=DIM, heads=HEADS, **OPTIONS.get(name, {})).eval()
    session = export(m, tmp_path / f"{name}.onnx", DIM)
    graph_ops = {node.op_type for node in onnx.load(str(tmp_path / f"{name}.onnx")).graph.node}
    assert "OneHot" not in graph_ops
    for batch, n, valid in [(2, 12, [12, 9]), (1, 5, [5]), (3, 23, [23, 17, 4])]:
        x = torch.randn(batch, n, DIM)
        kpm = torch.arange(n)[None, :] >= torch.tensor(valid)[:, None]
        with torch.no_grad():
            ref = m(x, key_padding_mask=kpm)[0].numpy()
        got = session.run(["y"], {"x": x.numpy(), "key_padding_mask": kpm.numpy()})[0]
        valid_rows = ~kpm.numpy()
        assert np.abs(got - ref)[valid_rows].max() <= 1e-4, f"{name}: N={n}"
        assert np.isfinite(got).all()
