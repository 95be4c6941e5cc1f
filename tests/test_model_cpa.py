"""CPA loss against a direct numpy computation; temperature init and clamp."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from physioser.model.cpa import CPA, info_nce


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _np_info_nce(a: np.ndarray, b: np.ndarray, scale: float, labels: np.ndarray | None) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = scale * a @ b.T
    n = len(a)
    if labels is None:
        pos = np.eye(n)
    else:
        pos = (labels[:, None] == labels[None, :]).astype(np.float64)
    pos = pos / pos.sum(axis=1, keepdims=True)
    l_ab = -(pos * _np_log_softmax(logits)).sum(axis=1).mean()
    l_ba = -(pos * _np_log_softmax(logits.T)).sum(axis=1).mean()
    return 0.5 * (l_ab + l_ba)


@pytest.mark.parametrize("supervised", [False, True])
def test_cpa_loss_equals_numpy(supervised: bool) -> None:
    torch.manual_seed(0)
    cpa = CPA(dim_v=12, dim_s=20, dim=8, hidden=16, supervised=supervised).double()
    z_v = torch.randn(9, 12, dtype=torch.float64)
    z_s = torch.randn(9, 20, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 3])
    loss, stats = cpa(z_v, z_s, labels)
    with torch.no_grad():
        pa, pb = cpa.g_v(z_v).numpy(), cpa.g_s(z_s).numpy()
    ref = _np_info_nce(pa, pb, cpa.logit_scale().item(), labels.numpy() if supervised else None)
    assert loss.item() == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert stats["cpa_scale"].item() == pytest.approx(1 / 0.07, rel=1e-6)
    loss.backward()
    assert cpa.log_scale.grad is not None and torch.isfinite(cpa.log_scale.grad)


def test_info_nce_diagonal_is_plain_cross_entropy_and_labels_all_distinct_match() -> None:
    torch.manual_seed(1)
    a = torch.nn.functional.normalize(torch.randn(6, 5, dtype=torch.float64), dim=1)
    b = torch.nn.functional.normalize(torch.randn(6, 5, dtype=torch.float64), dim=1)
    scale = torch.tensor(10.0, dtype=torch.float64)
    # supervised targets with all labels distinct reduce to the diagonal targets
    assert info_nce(a, b, scale).item() == pytest.approx(info_nce(a, b, scale, torch.arange(6)).item(), rel=1e-12)
    # perfectly aligned views with a large scale give a loss near zero; swapped rows do not
    assert info_nce(a, a, torch.tensor(100.0, dtype=torch.float64)).item() < info_nce(a, a.flip(0), scale).item()


def test_logit_scale_clamped_at_100() -> None:
    cpa = CPA(4, 4, dim=4)
    with torch.no_grad():
        cpa.log_scale.fill_(math.log(1000.0))
    assert cpa.logit_scale().item() == pytest.approx(100.0)
    with pytest.raises(ValueError, match="temperature"):
        CPA(4, 4, temperature=0.0)
