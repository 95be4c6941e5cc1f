"""VAP branch: contract, parameter budget, batching, ablations, ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physioser.vap import VAPBranch, VAPConfig
from physioser.synthesis import synthetic_vowel


def speech_like(seconds: float, seed: int) -> np.ndarray:
    return synthetic_vowel(f0=100.0 + 20 * seed, glide_to=200.0, seconds=seconds, noise=0.01, seed=seed)


@pytest.fixture(scope="module")
def branch():
    torch.manual_seed(0)
    return VAPBranch().eval()


def test_contract_and_parameter_budget(branch):
    assert branch.num_trainable_parameters() <= 1_000_000
    assert sum(p.numel() for p in branch.frontend.parameters()) == 0  # front end is fixed: cacheable
    x = torch.from_numpy(speech_like(1.0, 0))[None].repeat(2, 1)
    n = torch.tensor([16000, 9000])
    with torch.no_grad():
        z, frames, fl = branch(x, n)
        quartet, fl2 = branch.frontend(x, n)
        z2, frames2, _ = branch.encode_quartet(quartet, fl2)
    assert z.shape == (2, branch.out_dim) and frames.shape == (2, 101, branch.out_dim)
    assert fl.tolist() == [101, 57] and branch.frontend.frames_per_second == 100
    torch.testing.assert_close(z, z2)
    torch.testing.assert_close(frames, frames2)
    assert (frames[1, 57:] == 0).all()


def test_item_output_does_not_depend_on_batch(branch):
    a, b = speech_like(1.0, 1), speech_like(0.4, 2)
    x = torch.zeros(2, len(a))
    x[0], x[1, : len(b)] = torch.from_numpy(a), torch.from_numpy(b)
    x[1, len(b) :] = 0.3  # garbage past the length must be ignored
    with torch.no_grad():
        z, frames, fl = branch(x, torch.tensor([len(a), len(b)]))
        z1, frames1, _ = branch(torch.from_numpy(b)[None], torch.tensor([len(b)]))
    torch.testing.assert_close(z[1:], z1, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(frames[1:, : fl[1]], frames1, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("quaternion", [True, False])
@pytest.mark.parametrize("pooling_type", ["attentive", "mean_std"])
def test_variants_train_and_stay_finite_on_silence(quaternion, pooling_type):
    torch.manual_seed(0)
    model = VAPBranch(VAPConfig(quaternion=quaternion, pooling_type=pooling_type))
    x = torch.zeros(2, 8000)
    x[0] = torch.from_numpy(speech_like(0.5, 3))
    z, frames, _ = model(x, torch.tensor([8000, 8000]))  # item 1: silence
    assert torch.isfinite(z).all() and torch.isfinite(frames).all()
    (z.pow(2).mean() + frames.mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) > 0 for g in grads) == len(grads)


def test_real_twin_has_four_times_the_conv_weights():
    q = VAPBranch(VAPConfig(quaternion=True)).encoder
    r = VAPBranch(VAPConfig(quaternion=False)).encoder
    nq = sum(p.numel() for m in list(q.convs2d) + list(q.convs1d) for n, p in m.named_parameters() if n != "bias")
    nr = sum(p.numel() for m in list(r.convs2d) + list(r.convs1d) for n, p in m.named_parameters() if n != "bias")
    assert 4 * nq == nr


def test_component_ablation_ignores_the_dropped_components():
    torch.manual_seed(0)
    phase_only = VAPBranch(VAPConfig(components=("f_inst", "tau_g"))).eval()
    q, fl = phase_only.frontend(torch.from_numpy(speech_like(0.5, 4))[None], torch.tensor([8000]))
    changed = q.clone()
    changed[:, 0:2] = torch.randn_like(changed[:, 0:2])  # M and rho (axes r, i)
    with torch.no_grad():
        za = phase_only.encode_quartet(q, fl)[0]
        zb = phase_only.encode_quartet(changed, fl)[0]
        zc = phase_only.encode_quartet(q.flip(1), fl)[0]
    torch.testing.assert_close(za, zb)
    assert not torch.allclose(za, zc)
    with pytest.raises(ValueError, match="components"):
        VAPConfig(components=("pitch",))


def test_onnx_export_matches_onnxruntime(branch, tmp_path):
    ort = pytest.importorskip("onnxruntime")

    class Both(torch.nn.Module):
        def __init__(self, b):
            super().__init__()
            self.b = b

        def forward(self, waveforms, lengths):
            quartet, fl = self.b.frontend(waveforms, lengths)
            z, frames, fl = self.b.encode_quartet(quartet, fl)
            return quartet, z, frames, fl

    model = Both(branch).eval()
    path = tmp_path / "vap.onnx"
    example = (torch.from_numpy(speech_like(1.0, 0))[None].repeat(2, 1), torch.tensor([16000, 12000]))
    torch.onnx.export(
        model,
        example,
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["waveforms", "lengths"],
        output_names=["quartet", "z_v", "frames", "frame_lengths"],
        dynamic_axes={
            "waveforms": {0: "batch", 1: "samples"},
            "lengths": {0: "batch"},
            "quartet": {0: "batch", 3: "frames"},
            "z_v": {0: "batch"},
            "frames": {0: "batch", 1: "frames"},
            "frame_lengths": {0: "batch"},
        },
    )
    model.eval()  # export restores the wrapper's train flag on every submodule
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cases = [speech_like(s, i)[None] for i, s in enumerate((0.5, 2.0, 7.3))]
    batch = np.zeros((3, 16000), np.float32)  # dynamic batch with mixed lengths
    for i, n in enumerate((16000, 9000, 4000)):
        batch[i, :n] = speech_like(n / 16000, i + 5)
    noise = (0.1 * np.random.default_rng(0).standard_normal((1, 32000))).astype(np.float32)  # every cell noise-like
    inputs = [(c, np.array([c.shape[1]])) for c in cases + [noise]] + [(batch, np.array([16000, 9000, 4000]))]
    for waveforms, lengths in inputs:
        with torch.no_grad():
            expected = model(torch.from_numpy(waveforms), torch.from_numpy(lengths))
        got = session.run(None, {"waveforms": waveforms, "lengths": lengths})
        assert got[0].shape == tuple(expected[0].shape)
        for name, e, g in zip(("quartet", "z_v", "frames"), expected, got):
            assert np.abs(e.numpy() - g).max() <= 1e-4, (name, waveforms.shape, np.abs(e.numpy() - g).max())
        np.testing.assert_array_equal(got[3], expected[3].numpy())


def test_config_round_trip_and_validation():
    cfg = VAPConfig(pooling="erb", n_bands=40, components=("M", "rho"), axes=("rho", "M", "tau_g", "f_inst"))
    again = VAPConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.num_bands == 40
    with pytest.raises(ValueError, match="unknown VAP config keys"):
        VAPConfig.from_dict({"hop": 160})
    with pytest.raises(ValueError, match="group_delay must be one of"):
        VAPConfig(group_delay="hilbert")
    with pytest.raises(ValueError, match="axes must be a permutation"):
        VAPConfig(axes=("M", "M", "rho", "tau_g"))
    from dataclasses import fields, replace

    from physioser.vap import FRONTEND_FIELDS

    encoder_only = {"quaternion", "components", "channels_2d", "channels_1d", "kernels_1d", "dilations_1d", "dim",
                    "pooling_type", "attention_dim", "dropout", "min_seconds", "input_stats"}
    assert set(FRONTEND_FIELDS) == {f.name for f in fields(VAPConfig)} - encoder_only  # every front-end field is keyed
    assert cfg.frontend_key() != VAPConfig(pooling="erb", n_bands=40, dynamic_range_db=60).frontend_key()
    assert cfg.frontend_key() == replace(cfg, dim=64, quaternion=False, components=("tau_g",)).frontend_key()
    model = VAPBranch(cfg)
    z, frames, _ = model(torch.from_numpy(speech_like(0.3, 0))[None], torch.tensor([4800]))
    assert z.shape == (1, 256) and frames.shape == (1, 31, 256)


@pytest.mark.parametrize("group_delay", ["centroid", "plain"])
def test_onnx_front_end_parity_for_measured_group_delays(group_delay, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from physioser.vap import VAPFrontEnd

    class Quartet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fe = VAPFrontEnd(VAPConfig(group_delay=group_delay))

        def forward(self, waveforms, lengths):
            return self.fe(waveforms, lengths)[0]

    model = Quartet().eval()
    path = tmp_path / "fe.onnx"
    example = (torch.from_numpy(speech_like(0.5, 0))[None], torch.tensor([8000]))
    axes = {"waveforms": {0: "b", 1: "s"}, "lengths": {0: "b"}, "quartet": {0: "b", 3: "t"}}
    torch.onnx.export(model, example, str(path), dynamo=False, opset_version=17,
                      input_names=["waveforms", "lengths"], output_names=["quartet"], dynamic_axes=axes)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = np.zeros((2, 32000), np.float32)
    batch[0], batch[1, :20000] = speech_like(2.0, 1), speech_like(1.25, 2)
    for waveforms, lengths in ((batch, np.array([32000, 20000])), (batch[1:, :20000], np.array([20000]))):
        with torch.no_grad():
            expected = model(torch.from_numpy(waveforms), torch.from_numpy(lengths)).numpy()
        got = session.run(None, {"waveforms": waveforms, "lengths": lengths})[0]
        assert np.abs(expected - got).max() <= 1e-4
