"""Drop-one-component attribution under listening conditions: each copy of a clip runs with its own
component mask, the model's own mask comes back afterwards, and with all four components gone a
VAP-only model cannot tell clips of one length apart."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from physioser.experiments.quartet_attribution import ABLATIONS, _masks, attribute, markdown
from physioser.model import PhysioSER
from physioser.model.config import load_config
from tests.test_model_physioser import SMALL_VAP


def test_masks_drop_one_component_each_and_keep_the_models_own():
    axes = ("rho", "M", "tau_g", "f_inst")
    own = torch.tensor([1.0, 1.0, 0.0, 1.0]).view(1, 4, 1, 1)  # the model never sees tau_g
    m = _masks(axes, own)[:, :, 0, 0]
    assert m.shape == (1 + len(ABLATIONS), 4)
    assert m[0].tolist() == [1, 1, 0, 1]
    assert m[1 + ABLATIONS.index("M")].tolist() == [1, 0, 0, 1]
    assert m[1 + ABLATIONS.index("rho")].tolist() == [0, 1, 0, 1]
    assert m[1 + ABLATIONS.index("all four")].tolist() == [0, 0, 0, 0]


def test_attribution_of_a_vap_only_model_on_clean_clips(tmp_path):
    cfg = load_config("configs/physioser.yaml", [SMALL_VAP, "model.dim=32", "model.branches=[vap]", "cpa.weight=0"])
    cfg = replace(cfg, class_names=["neutral", "happy", "angry", "sad"])
    torch.manual_seed(0)
    model = PhysioSER(cfg).eval()
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    rows = []
    for i, (label, f0) in enumerate([("neutral", 110), ("happy", 220), ("angry", 330), ("sad", 90)] * 2):
        path = tmp_path / "C" / f"{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, (0.2 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32), 16000)
        rows.append(SimpleNamespace(path=str(path), corpus="C", canonical=label))
    own = model.vap.encoder.component_mask.clone()
    out = attribute(model, rows, ["clean"], 0, tmp_path, tmp_path, progress=False)
    assert torch.equal(model.vap.encoder.component_mask, own)
    r = out["clean"]
    assert set(r) == {"full", *ABLATIONS}
    # no quartet: every clip (all of one length) gets the same logits, so one class, UA 1/4
    assert r["full"] - r["all four"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no VAP branch"):
        attribute(SimpleNamespace(use_vap=False), rows, ["clean"], 0, tmp_path, tmp_path)
    text = markdown({"models": {"a": out, "b": out}})
    assert text.splitlines()[-1].startswith(f"| clean | {r['full']:.3f} ± 0.000 |")
