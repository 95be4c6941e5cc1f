"""Training aids that make the fusion use the VAP branch (branch dropout, auxiliary VAP loss, gated
late fusion) and the VAP encoder's input statistics: on a tiny batch each changes the gradients as
intended, the training-only ones are off at inference and absent from the exported graph."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from physioser.export import export_onnx
from physioser.model import PhysioSER
from physioser.model.config import ConfigError, load_config
from tests.test_model_physioser import _cached_batch, _cfg, _waves

LABELS = torch.tensor([0, 1, 2])


def _model(*overrides: str, seed: int = 0) -> tuple[PhysioSER, dict]:
    cfg, backbone = _cfg("cpa.weight=0", *overrides)
    torch.manual_seed(seed)
    model = PhysioSER(cfg, backbone=backbone)
    x, lengths = _waves()
    batch = _cached_batch(model, x, lengths)
    model.set_layer_statistics(batch["backbone_segments"], batch["backbone_counts"])
    return model, batch


def _grads(model: PhysioSER, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _backbone_grad(grads: dict[str, torch.Tensor]) -> float:
    return sum(float(g.abs().sum()) for n, g in grads.items() if n in ("layer_proj", "layer_bias") or n.startswith("featurizer."))


def _vap_grad(grads: dict[str, torch.Tensor]) -> float:
    return sum(float(g.abs().sum()) for n, g in grads.items() if n.startswith("vap."))


def test_branch_dropout_cuts_the_backbone_gradient_only_in_training():
    model, batch = _model("model.branch_dropout=0.999999", "model.dropout=0")
    model.train()
    dropped = _grads(model, F.cross_entropy(model.forward_cached(batch)["logits"], LABELS))
    # every utterance lost its backbone tokens: no gradient reaches the backbone projector, the VAP branch carries it
    assert _backbone_grad(dropped) == 0.0 and _vap_grad(dropped) > 0
    model.branch_dropout = 0.0
    kept = _grads(model, F.cross_entropy(model.forward_cached(batch)["logits"], LABELS))
    assert _backbone_grad(kept) > 0
    # at inference nothing is dropped: eval output equals the model without branch dropout
    model.branch_dropout = 0.999999
    model.eval()
    with torch.no_grad():
        evaluated = model.forward_cached(batch)["logits"]
        model.branch_dropout = 0.0
        reference = model.forward_cached(batch)["logits"]
    torch.testing.assert_close(evaluated, reference, rtol=0, atol=0)


def test_vap_aux_loss_trains_the_vap_classifier_and_is_not_in_the_inference_path():
    model, batch = _model("train.vap_aux_weight=1.0", "model.dropout=0")
    model.train()
    out = model.forward_cached(batch)
    assert out["vap_logits"].shape == (3, 4)
    main_only = _grads(model, F.cross_entropy(out["logits"], LABELS))
    assert "vap_classifier.weight" not in main_only  # the main loss never reaches it
    out = model.forward_cached(batch)
    aux = _grads(model, F.cross_entropy(out["logits"], LABELS) + F.cross_entropy(out["vap_logits"], LABELS))
    assert float(aux["vap_classifier.weight"].abs().sum()) > 0
    changed = [n for n in main_only if n.startswith("vap.") and not torch.allclose(main_only[n], aux[n])]
    assert changed, "the auxiliary loss must add to the VAP encoder's gradient"
    # inference: the classifier's weights do not change the outputs
    model.eval()
    x, lengths = _waves()
    with torch.no_grad():
        before = model(x, lengths)["logits"]
        model.vap_classifier.weight.normal_()
        after = model(x, lengths)["logits"]
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_gated_late_fusion_mixes_vap_logits_in_both_paths():
    model, batch = _model("model.late_fusion=gated")
    model.eval()
    x, lengths = _waves()
    with torch.no_grad():
        cached = model.forward_cached(batch)
        direct = model(x, lengths)
        gate = cached["gate"]
        assert ((gate > 0) & (gate < 1)).all()
        torch.testing.assert_close(direct["logits"], cached["logits"], atol=2e-4, rtol=1e-4)
        # gate fully open: the logits are the VAP classifier's
        model.fusion_gate.bias.fill_(50.0)
        opened = model.forward_cached(batch)
    torch.testing.assert_close(opened["logits"], opened["vap_logits"], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        model.fusion_gate.bias.zero_()
    model.train()
    grads = _grads(model, F.cross_entropy(model.forward_cached(batch)["logits"], LABELS))
    assert float(grads["fusion_gate.weight"].abs().sum()) > 0 and float(grads["vap_classifier.weight"].abs().sum()) > 0


def test_exported_graph_holds_no_training_aid(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, _ = _model("model.branch_dropout=0.5", "train.vap_aux_weight=1.0")
    model.eval()
    with torch.no_grad():
        model.vap_classifier.weight.fill_(0.123456)
    path = export_onnx(model, tmp_path / "m.onnx", metadata={"class_names": model.class_names, "backbone": "whisper-tiny.en",
                                                              "training_corpora": ["test"]})
    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    assert not ops & {"Dropout", "RandomUniform", "RandomUniformLike", "Bernoulli", "RandomNormal"}
    assert all(not np.allclose(onnx.numpy_helper.to_array(t), 0.123456) for t in graph.initializer if t.dims == [4, 32])
    x, lengths = _waves()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"waveform": x.numpy(), "lengths": lengths.numpy()})[0]
    with torch.no_grad():
        expected = model(x, lengths)["logits"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=1e-3)


def test_input_stats_reach_the_vap_vector():
    cfg, _ = _cfg()
    cfg = replace(cfg, model=replace(cfg.model, branches=["vap"], head="linear", vap=replace(cfg.model.vap, input_stats=True)),
                  cpa=replace(cfg.cpa, weight=0.0))
    torch.manual_seed(0)
    model = PhysioSER(cfg).eval()
    q = torch.randn(2, 4, 16, 50)
    lengths = torch.tensor([50, 30])
    z, _, _ = model.vap.encode_quartet(q, lengths)
    # shifting one component's level in one band moves z through the statistics path
    shifted = q.clone()
    shifted[:, 1, 3] += 2.0
    z2, _, _ = model.vap.encode_quartet(shifted, lengths)
    assert not torch.allclose(z, z2)
    # padded frames change nothing
    padded = q.clone()
    padded[1, :, :, 30:] = 7.0
    z3, _, _ = model.vap.encode_quartet(padded, lengths)
    torch.testing.assert_close(z3, z, atol=1e-5, rtol=1e-5)


def test_config_rejects_aids_without_both_branches():
    with pytest.raises(ConfigError, match="branch_dropout and model.late_fusion need both branches"):
        load_config("configs/vap_only.yaml", ["model.branch_dropout=0.3"])
    with pytest.raises(ConfigError, match="late_fusion must be none or gated"):
        load_config("configs/physioser.yaml", ["model.late_fusion=sum"])
    with pytest.raises(ConfigError, match="vap_aux_weight > 0 needs the VAP branch"):
        load_config("configs/backbone_only.yaml", ["train.vap_aux_weight=0.5"])
