"""The research frame-level Transformer SER classifier over any attention variant."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from physioser.model.research import ResearchConfig, ResearchSER, sinusoidal_positions
from physioser.nn.attention import aux_loss


def tiny(attention: str = "mha", **kw) -> ResearchSER:
    torch.manual_seed(0)
    cfg = dict(input_dim=12, num_classes=4, dim=16, heads=4, layers=2, attention=attention, dropout=0.0)
    cfg.update(kw)
    return ResearchSER(ResearchConfig.from_dict(cfg))


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="unknown attention"):
        ResearchConfig(input_dim=4, num_classes=3, attention="bogus")
    with pytest.raises(ValueError, match="unknown key"):
        ResearchConfig.from_dict(dict(input_dim=4, num_classes=3, atention="mha"))
    with pytest.raises(ValueError, match="features"):
        tiny()(torch.randn(2, 5, 7), torch.tensor([5, 5]))


@pytest.mark.parametrize("attention,subsample,pooling", [("mha", 1, "mean"), ("neighborhood", 2, "attention"),
                                                         ("moh", 3, "mean"), ("differential", 1, "mean")])
def test_padding_invariance_and_aux(attention, subsample, pooling):
    options = {"neighborhood": dict(kernel_size=3)}.get(attention, {})
    m = tiny(attention, subsample=subsample, pooling=pooling, attention_options=options).eval()
    feats = torch.randn(2, 11, 12)
    lengths = torch.tensor([11, 7])
    logits, aux = m(feats, lengths)
    assert logits.shape == (2, 4) and aux == {}
    alone, _ = m(feats[1:, :7], lengths[1:])
    torch.testing.assert_close(logits[1:], alone, atol=1e-5, rtol=0)
    feats2 = feats.clone()
    feats2[1, 7:] = 50.0
    torch.testing.assert_close(m(feats2, lengths)[0], logits, atol=1e-5, rtol=0)
    m.train()
    _, aux = m(feats, lengths)
    assert ("loss_moh_balance" in aux) == (attention == "moh")
    if attention == "differential":  # λ_init follows the layer index
        assert [b.attn.lambda_init for b in m.blocks] == pytest.approx([0.2, 0.8 - 0.6 * np.exp(-0.3)])


def test_sinusoidal_positions():
    p = sinusoidal_positions(5, 6, torch.zeros(1))
    assert p.shape == (1, 5, 6)
    assert torch.allclose(p[0, :, 0], torch.sin(torch.arange(5.0)))
    assert torch.allclose(p[0, :, 1], torch.cos(torch.arange(5.0)))


def test_learns_a_separable_task():
    torch.manual_seed(1)
    m = tiny("gated", layers=1)
    labels = torch.arange(16) % 4
    centres = torch.randn(4, 12) * 2
    feats = centres[labels][:, None, :] + 0.5 * torch.randn(16, 9, 12)
    lengths = torch.randint(4, 10, (16,))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(40):
        logits, aux = m(feats, lengths)
        loss = nn.functional.cross_entropy(logits, labels) + aux_loss(aux)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    assert (m(feats, lengths)[0].argmax(-1) == labels).float().mean() > 0.9


@pytest.mark.parametrize("attention", ["strided", "affine"])
def test_research_model_exports(attention, tmp_path):
    m = tiny(attention, subsample=2, attention_options={"strided": dict(block_size=2, vert_stride=2)}.get(attention, {}))
    m.eval()

    class Logits(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, features, lengths):
            return self.model(features, lengths)[0]

    path = tmp_path / "research.onnx"
    torch.onnx.export(Logits(m).eval(), (torch.randn(2, 10, 12), torch.tensor([10, 6])), str(path), dynamo=False,
                      opset_version=17, input_names=["features", "lengths"], output_names=["logits"],
                      dynamic_axes={"features": {0: "b", 1: "t"}, "lengths": {0: "b"}, "logits": {0: "b"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for t, lens in [(10, [10, 6]), (23, [23, 14, 3])]:
        feats = torch.randn(len(lens), t, 12)
        lengths = torch.tensor(lens)
        with torch.no_grad():
            ref = m(feats, lengths)[0].numpy()
        got = session.run(["logits"], {"features": feats.numpy(), "lengths": lengths.numpy()})[0]
        assert np.abs(got - ref).max() <= 1e-4
