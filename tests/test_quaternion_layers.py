"""Quaternion layers against an explicit Hamilton product, the norm identity, parameter counts, init, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from physioser.nn.quaternion import (
    QuaternionConv1d,
    QuaternionConv2d,
    QuaternionLinear,
    QuaternionNorm,
    RealChannelNorm,
    conv_norm,
    real_twin,
)


def hamilton(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Explicit Hamilton product a ⊗ b of quaternions stored on the last axis (r, i, j, k)."""
    ar, ai, aj, ak = np.moveaxis(a, -1, 0)
    br, bi, bj, bk = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            ar * br - ai * bi - aj * bj - ak * bk,
            ar * bi + ai * br + aj * bk - ak * bj,
            ar * bj - ai * bk + aj * br + ak * bi,
            ar * bk + ai * bj - aj * bi + ak * br,
        ],
        axis=-1,
    )


def weight_quaternions(layer) -> np.ndarray:
    """[out/4, in/4, *kernel, 4]"""
    return np.stack([p.detach().double().numpy() for p in (layer.r, layer.i, layer.j, layer.k)], axis=-1)


def to_quaternions(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """Real channels (component-major blocks) on ``axis`` -> quaternions on a new last axis."""
    return np.stack(np.split(x, 4, axis=axis), axis=-1)


def test_linear_equals_explicit_hamilton_product():
    torch.manual_seed(0)
    layer = QuaternionLinear(12, 8, bias=True)
    x = torch.randn(5, 12)
    y = layer(x).detach().double().numpy()
    w = weight_quaternions(layer)  # [2, 3, 4]
    xq = to_quaternions(x.double().numpy())  # [5, 3, 4]
    ref = hamilton(w[None], xq[:, None]).sum(axis=2)  # [5, 2, 4]
    ref = np.concatenate(np.moveaxis(ref, -1, 0), axis=-1) + layer.bias.detach().double().numpy()
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_conv1d_equals_explicit_hamilton_product():
    torch.manual_seed(1)
    layer = QuaternionConv1d(8, 12, kernel_size=3, stride=1, padding=0, dilation=2, bias=False)
    x = torch.randn(2, 8, 11)
    y = layer(x).detach().double().numpy()  # [2, 12, 7]
    w = weight_quaternions(layer)  # [3, 2, 3, 4]
    xq = to_quaternions(x.double().numpy())  # [2, 2, 11, 4]
    t_out = 11 - 2 * 2
    ref = np.zeros((2, 3, t_out, 4))
    for t in range(t_out):
        for tap in range(3):
            ref[:, :, t] += hamilton(w[None, :, :, tap], xq[:, None, :, t + 2 * tap]).sum(axis=2)
    np.testing.assert_allclose(y, np.concatenate(np.moveaxis(ref, -1, 0), axis=1), atol=1e-5)


def test_conv2d_equals_explicit_hamilton_product():
    torch.manual_seed(2)
    layer = QuaternionConv2d(4, 8, kernel_size=(2, 3), stride=(2, 1), bias=False)
    x = torch.randn(1, 4, 6, 5)
    y = layer(x).detach().double().numpy()  # [1, 8, 3, 3]
    w = weight_quaternions(layer)  # [2, 1, 2, 3, 4]
    xq = to_quaternions(x.double().numpy())  # [1, 1, 6, 5, 4]
    ref = np.zeros((1, 2, 3, 3, 4))
    for h in range(3):
        for t in range(3):
            for a in range(2):
                for b in range(3):
                    ref[:, :, h, t] += hamilton(w[None, :, :, a, b], xq[:, None, :, 2 * h + a, t + b]).sum(axis=2)
    np.testing.assert_allclose(y, np.concatenate(np.moveaxis(ref, -1, 0), axis=1), atol=1e-5)


def test_norm_identity_single_quaternion_weight():
    torch.manual_seed(3)
    layer = QuaternionLinear(4, 4, bias=False)
    x = torch.randn(200, 4, dtype=torch.float64)
    y = torch.nn.functional.linear(x, layer.weight().double())
    w_norm = torch.stack([layer.r, layer.i, layer.j, layer.k]).double().norm()
    torch.testing.assert_close(y.norm(dim=1), w_norm * x.norm(dim=1))


@pytest.mark.parametrize(
    "layer",
    [
        QuaternionLinear(16, 32, bias=False),
        QuaternionConv1d(16, 32, 5, bias=False),
        QuaternionConv2d(8, 16, (3, 3), bias=False),
    ],
    ids=["linear", "conv1d", "conv2d"],
)
def test_parameter_count_is_a_quarter_of_the_real_twin(layer):
    twin = real_twin(layer)
    n_q = sum(p.numel() for p in layer.parameters())
    n_r = sum(p.numel() for p in twin.parameters())
    assert 4 * n_q == n_r
    x = torch.randn(2, 16) if isinstance(layer, QuaternionLinear) else torch.randn(2, layer.in_channels, *(9,) * len(layer.kernel_size))
    assert twin(x).shape == layer(x).shape


def test_gradients_flow_to_every_part():
    torch.manual_seed(4)
    layer = QuaternionConv1d(8, 8, 3, padding=1)
    norm = QuaternionNorm(8)
    loss = norm(layer(torch.randn(3, 8, 10))).pow(2).sum() + layer(torch.randn(3, 8, 10)).sum()
    loss.backward()
    for name, p in list(layer.named_parameters()) + list(norm.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_polar_init_modulus_is_scaled_chi4():
    torch.manual_seed(5)
    layer = QuaternionConv1d(256, 256, 3, bias=False)
    modulus = torch.stack([layer.r, layer.i, layer.j, layer.k]).norm(dim=0)
    fan_in = fan_out = 64 * 3
    scale = 1.0 / math.sqrt(2 * (fan_in + fan_out))
    chi4_mean = math.sqrt(2) * math.gamma(2.5) / math.gamma(2.0)
    assert abs(modulus.mean().item() / scale / chi4_mean - 1) < 0.02
    assert abs(layer.r.mean().item()) < 0.02 * scale  # uniform phase: no bias towards the real axis


def test_quaternion_norm_scales_whole_quaternions():
    torch.manual_seed(6)
    norm = QuaternionNorm(16)
    x = torch.randn(2, 16, 7) * 5 + 3
    y = norm(x).unflatten(1, (4, 4))
    torch.testing.assert_close(y.mean(dim=2), torch.zeros(2, 4, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.pow(2).sum(1).mean(1), torch.ones(2, 7), atol=1e-3, rtol=0)
    # one real factor per position: centred input quaternions keep their direction
    xc = x.unflatten(1, (4, 4))
    xc = xc - xc.mean(dim=2, keepdim=True)
    ratio = y / xc
    torch.testing.assert_close(ratio, ratio[:, :1, :1].expand_as(ratio), atol=1e-4, rtol=1e-4)
    assert isinstance(real_twin(norm), RealChannelNorm)


def test_channels_must_be_multiples_of_four():
    with pytest.raises(ValueError, match="multiple of 4"):
        QuaternionConv1d(6, 8, 3)


@pytest.mark.parametrize("quaternion", [True, False])
@pytest.mark.parametrize("conv_cls, shape", [(QuaternionConv1d, (2, 8, 11)), (QuaternionConv2d, (2, 8, 6, 11))])
def test_conv_norm_folds_the_centring_into_the_conv(conv_cls, shape, quaternion):
    torch.manual_seed(7)
    conv = conv_cls(8, 16, 3, padding=1, dilation=1)
    norm = QuaternionNorm(16)
    with torch.no_grad():
        norm.gain.uniform_(0.5, 2.0)
        norm.bias.normal_()
    if not quaternion:
        conv, norm = real_twin(conv), real_twin(norm)
    x = torch.randn(*shape) * 3 + 1
    torch.testing.assert_close(conv_norm(conv, norm, x), norm(conv(x)), atol=2e-5, rtol=1e-5)
