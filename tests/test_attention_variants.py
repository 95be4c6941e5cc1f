"""Attention-variant backend: degenerate settings, exact masks, padding, aux losses, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from physioser.nn.attention import (VARIANTS, TransformerBlock, aux_loss, build_attention, neighborhood_mask,
                                    streaming_mask, strided_mask)

DIM, HEADS = 32, 4

# The explicit options that turn each variant into plain MHA (an MHA state dict is then loaded).
DEGENERATE = {
    "gqa": dict(kv_heads=HEADS),
    "moh": dict(shared_heads=HEADS, shared_gate="ones"),
    "gated": dict(gate_bias_init=30.0),
    "affine": dict(alpha_bias_init=5.0, alpha_ma_init=1.0),
    "neighborhood": dict(kernel_size=7, dilation=1),  # k = N with N = 7
    "streaming": dict(alpha_init=1.0),
    "strided": dict(vert_stride=1),
    "dynamic_mask": dict(),  # its init: A = 0, N ≤ keep_window
    "softpag": dict(u=0.0),
    "single_head": dict(partial_ratio=1.0, qk_dim=DIM, norm="none", act="none"),  # vs MHA with 1 head
}

# Non-trivial settings: every mask/gate/mixing path active on short sequences.
ACTIVE = {
    "mha": {}, "gqa": dict(kv_heads=2), "moh": dict(shared_heads=1, top_k=2), "gated": dict(mode="elementwise"),
    "affine": dict(alpha_ma_init=0.3), "single_head": dict(qk_dim=8), "neighborhood": dict(kernel_size=3, dilation=2),
    "streaming": dict(sink=2, recent=2, alpha_init=0.6), "strided": dict(block_size=2, local_blocks=1, vert_stride=4),
    "dynamic_mask": dict(keep_window=4, a_init=0.5), "differential": dict(depth=2), "softpag": dict(u=[0.0, 0.2, 0.5, 1.0]),
}


def make(name: str, seed: int = 0, dim: int = DIM, heads: int = HEADS, **options):
    torch.manual_seed(seed)
    return build_attention(name, dim=dim, heads=heads, **options)


def test_registry_covers_the_issue_and_rejects_bad_names():
    assert set(ACTIVE) == set(VARIANTS)
    assert set(DEGENERATE) == set(VARIANTS) - {"mha", "differential"}
    with pytest.raises(ValueError, match="unknown attention variant"):
        build_attention("nope", dim=DIM, heads=HEADS)
    with pytest.raises(ValueError, match="kernel"):
        build_attention("mha", dim=DIM, heads=HEADS, kernel_size=3)
    with pytest.raises(ValueError, match="odd"):
        build_attention("neighborhood", dim=DIM, heads=HEADS, kernel_size=4)
    with pytest.raises(ValueError, match="cover"):
        build_attention("strided", dim=DIM, heads=HEADS, vert_stride=8)


@pytest.mark.parametrize("name", sorted(DEGENERATE))
@pytest.mark.parametrize("padded", [False, True])
def test_degenerate_setting_equals_mha(name, padded):
    heads = 1 if name == "single_head" else HEADS
    mha = make("mha", seed=1, heads=heads).eval()
    var = make(name, seed=2, heads=heads, **DEGENERATE[name]).eval()
    missing, unexpected = var.load_state_dict(mha.state_dict(), strict=False)
    assert not unexpected
    assert not {k for k in missing if k.split(".")[0] in ("q_proj", "k_proj", "v_proj", "out_proj")}
    x = torch.randn(3, 7, DIM)
    kpm = None
    if padded:
        kpm = torch.zeros(3, 7, dtype=torch.bool)
        kpm[1, 5:] = True
        kpm[2, 3:] = True
    y_ref, _ = mha(x, key_padding_mask=kpm)
    y, _ = var(x, key_padding_mask=kpm)
    if name == "neighborhood" and padded:  # windows shift at each sample's own end: k = N only for sample 0
        y, y_ref = y[:1], y_ref[:1]
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=0)


def test_degenerate_affine_and_moh_also_in_training():
    mha = make("mha", seed=1).train()
    x = torch.randn(2, 6, DIM)
    for name in ("affine", "moh", "streaming"):
        var = make(name, seed=3, **DEGENERATE[name]).train()
        var.load_state_dict(mha.state_dict(), strict=False)
        torch.testing.assert_close(var(x)[0], mha(x)[0], atol=1e-5, rtol=0)


def test_differential_matches_explicit_formula():
    m = make("differential", depth=3).eval()
    lam_init = 0.8 - 0.6 * math.exp(-0.3 * 3)
    assert m.lambda_init == pytest.approx(lam_init)
    x = torch.randn(2, 6, DIM)
    B, N, d = 2, 6, DIM // HEADS
    q = m.q_proj(x).view(B, N, HEADS, d).transpose(1, 2)
    k = m.k_proj(x).view(B, N, HEADS, d).transpose(1, 2)
    v = m.v_proj(x).view(B, N, HEADS, d).transpose(1, 2)
    h = d // 2
    a1 = torch.softmax(q[..., :h] @ k[..., :h].transpose(-1, -2) / math.sqrt(h), -1)
    a2 = torch.softmax(q[..., h:] @ k[..., h:].transpose(-1, -2) / math.sqrt(h), -1)
    lam = (torch.exp(torch.dot(m.lambda_q1, m.lambda_k1)) - torch.exp(torch.dot(m.lambda_q2, m.lambda_k2))
           + lam_init)
    o = (a1 - lam * a2) @ v
    o = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * m.norm_weight * (1 - lam_init)
    ref = m.out_proj(o.transpose(1, 2).reshape(B, N, DIM))
    torch.testing.assert_close(m(x)[0], ref, atol=1e-5, rtol=0)


def _natten_reference(n: int, length: int, k: int, dilation: int) -> torch.Tensor:
    """Centre-clamp definition, per dilation group: window = group[clamp(i'−k//2, 0, L_g−k) : +k]."""
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        group = [p for p in range(i % dilation, length, dilation)]
        idx = i // dilation
        start = max(0, min(idx - k // 2, len(group) - k))
        for p in group[start:start + k]:
            allowed[i, p] = True
    return allowed


@pytest.mark.parametrize("n,k,dilation", [(11, 3, 1), (11, 5, 1), (12, 3, 2), (13, 3, 3), (9, 9, 1)])
def test_neighborhood_mask_is_natten(n, k, dilation):
    mask = neighborhood_mask(n, n, torch.tensor(n).view(1, 1, 1, 1), k, dilation, torch.zeros(1))[0, 0]
    assert torch.equal(mask, _natten_reference(n, n, k, dilation))
    assert (mask.sum(-1) == k).all()  # every query sees exactly k keys
    if dilation == 1:  # the window shifts at the borders instead of shrinking
        assert mask[0, :k].all() and mask[-1, n - k:].all()
    # per-sample length: borders at each sample's own end
    lengths = torch.tensor([n, n - 4]).view(2, 1, 1, 1)
    mask2 = neighborhood_mask(n, n, lengths, k, dilation, torch.zeros(1))
    length = n - 4
    ref = _natten_reference(n, length, k, dilation)
    assert torch.equal(mask2[1, 0, :length, :length], ref[:length, :length])
    if length >= k * dilation:  # windows stay inside the valid part (the module also masks padded keys)
        assert not mask2[1, 0, :length, length:].any()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), half=st.integers(0, 6), dilation=st.integers(1, 4), cut=st.integers(0, 10))
def test_neighborhood_mask_property(n, half, dilation, cut):
    k = 2 * half + 1
    length = max(1, n - cut)
    mask = neighborhood_mask(n, n, torch.tensor(length).view(1, 1, 1, 1), k, dilation, torch.zeros(1))[0, 0]
    ref = _natten_reference(n, length, k, dilation)
    assert torch.equal(mask[:length, :length], ref[:length, :length])
    group_sizes = torch.tensor([len(range(i % dilation, length, dilation)) for i in range(length)])
    assert torch.equal(mask[:length, :length].sum(-1), torch.clamp(group_sizes, max=k))


def test_streaming_mask_is_sink_union_recent_and_used():
    n, sink, recent = 10, 2, 3
    mask = streaming_mask(n, n, sink, recent, torch.zeros(1))[0, 0]
    ref = torch.tensor([[j < sink or abs(i - j) < recent for j in range(n)] for i in range(n)])
    assert torch.equal(mask, ref)
    m = make("streaming", sink=sink, recent=recent, alpha_init=0.0).eval()
    x = torch.randn(2, n, DIM)
    q, k, v = m.project(x, x)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=ref)
    torch.testing.assert_close(m(x)[0], m.out_proj(m.merge(o)), atol=1e-5, rtol=0)


def test_strided_mask_layout_and_union_covers_every_key():
    n, b, n_local, v = 40, 4, 1, 4
    mask = strided_mask(n, n, HEADS, b, n_local, v, 0, 0, torch.zeros(1))[0]
    for h in range(HEADS):
        ref = torch.tensor([[abs(i // b - j // b) < n_local or (j // b + h) % v == 0 for j in range(n)]
                            for i in range(n)])
        assert torch.equal(mask[h], ref)
    assert not mask.all(0).all()  # each head alone is sparse ...
    assert mask.any(0).all()  # ... the union over heads covers every key for every query
    dense = strided_mask(n, n, HEADS, b, n_local, v, 0, 1, torch.zeros(1))[0]
    assert dense[-1].all()


def test_dynamic_mask_keeps_top_w_keys_by_value_bias():
    w = 3
    m = make("dynamic_mask", keep_window=w, a_init=0.7).eval()
    x = torch.randn(2, 8, DIM)
    q, k, v = m.project(x, x)
    delta = torch.exp(m.A * F.softplus(m.dt_proj(m.v_proj(x)))).transpose(1, 2)  # [B, H, N]
    bias = delta[:, :, None, :].expand(-1, -1, 8, -1)
    top = bias.topk(w, -1).indices  # the reference's per-row top-w over the full bias
    keep = torch.zeros_like(bias).scatter(-1, top, 1.0) > 0
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~keep, float("-inf")))
    torch.testing.assert_close(m(x)[0], m.out_proj(m.merge(ref)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_padding_invariance(name):
    m = make(name, **ACTIVE[name]).eval()
    torch.manual_seed(5)
    x = torch.randn(2, 10, DIM)
    kpm = torch.zeros(2, 10, dtype=torch.bool)
    kpm[1, 6:] = True
    y1, _ = m(x, key_padding_mask=kpm)
    x2 = x.clone()
    x2[1, 6:] = 100 * torch.randn(4, DIM)
    y2, _ = m(x2, key_padding_mask=kpm)
    torch.testing.assert_close(y1[1, :6], y2[1, :6], atol=1e-5, rtol=0)
    torch.testing.assert_close(y1[0], y2[0], atol=1e-5, rtol=0)
    alone, _ = m(x[1:, :6])  # same as running the sample unpadded
    torch.testing.assert_close(y1[1, :6], alone[0], atol=1e-5, rtol=0)
    assert torch.isfinite(y1).all()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_gradients_reach_every_parameter(name):
    options = dict(ACTIVE[name])
    m = make(name, **options).train()
    x = torch.randn(2, 10, DIM, requires_grad=True)
    kpm = torch.zeros(2, 10, dtype=torch.bool)
    kpm[0, 7:] = True
    y, aux = m(x, key_padding_mask=kpm)
    ((y ** 2).mean() + aux_loss(aux)).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_aux_losses_only_in_training(name):
    m = make(name, **ACTIVE[name])
    x = torch.randn(2, 9, DIM)
    _, aux_train = m.train()(x)
    _, aux_eval = m.eval()(x)
    expected = {"moh": {"loss_moh_balance"}, "streaming": {"loss_streaming_l1"}}.get(name, set())
    assert set(aux_train) == expected
    assert aux_eval == {}


def test_moh_gates_and_load_balance_formula():
    m = make("moh", dim=DIM, heads=8, shared_heads=2, top_k=4).train()
    x = torch.randn(3, 5, DIM)
    kpm = torch.zeros(3, 5, dtype=torch.bool)
    kpm[2, 2:] = True
    _, aux = m(x, key_padding_mask=kpm)
    gates = m.gates(x, (~kpm).float()[..., None], {})[..., 0]  # [B, H, N]
    assert ((gates[:, 2:] > 0).sum(1) == 4).all()  # top-4 of 6 routed heads active
    p = torch.softmax(m.w_r(x), -1)[~kpm]  # valid tokens only
    chosen = torch.zeros_like(p).scatter(-1, p.topk(4, -1).indices, 1.0)
    expected = 0.01 * 6 * (chosen.mean(0) * p.mean(0)).sum()  # β·E·Σ f_i P_i = β·E²·mean(f·P)
    torch.testing.assert_close(aux["loss_moh_balance"], expected)
    a = torch.softmax(m.w_h(x), -1) * 2  # routed group sums to K·2α₂, shared to h_s·2α₁
    torch.testing.assert_close(gates[:, 2:].sum(1), 4 * a[..., 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(gates[:, :2].sum(1), 2 * a[..., 0], atol=1e-5, rtol=0)


def test_streaming_l1_term():
    m = make("streaming", alpha_init=0.5, l1_weight=0.05).train()
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([0.2, 1.5, -0.3, 0.6]))  # clamped to [0, 1]
    _, aux = m(torch.randn(1, 5, DIM))
    assert aux["loss_streaming_l1"].item() == pytest.approx(0.05 * (0.2 + 1.0 + 0.0 + 0.6))


def test_affine_ema_excludes_padding_and_freezes_at_eval():
    m = make("affine", rho=0.9, alpha_ma_init=0.0).train()
    x = torch.randn(2, 6, DIM)
    kpm = torch.zeros(2, 6, dtype=torch.bool)
    kpm[1, 3:] = True
    alpha = torch.clamp(0.1 * m.alpha_proj(x) + 0.5, 0, 1).detach()
    m(x, key_padding_mask=kpm)
    expected = 0.1 * alpha[~kpm].mean(0)
    torch.testing.assert_close(m.alpha_ma, expected)
    m.eval()
    m(x, key_padding_mask=kpm)
    torch.testing.assert_close(m.alpha_ma, expected)
    # rows of the effective attention sum to α_ma: with V ≡ const c the output per head is α_ma·c
    q, k, v = m.project(x, x)
    o = m.attend(q, k, torch.ones_like(v), None, x=x, key_padding=None, query_padding=None, aux={})
    torch.testing.assert_close(o, expected.view(1, -1, 1, 1).expand_as(o), atol=1e-6, rtol=0)


def test_gqa_shares_kv_within_groups():
    m = make("gqa", kv_heads=2)
    x = torch.randn(1, 5, DIM)
    _, k, v = m.project(x, x)
    assert torch.equal(k[:, 0], k[:, 1]) and torch.equal(k[:, 2], k[:, 3]) and not torch.equal(k[:, 1], k[:, 2])
    assert m.k_proj.out_features == 2 * DIM // HEADS


def test_cross_attention_context():
    m = make("gated", **ACTIVE["gated"]).eval()
    x, ctx = torch.randn(2, 3, DIM), torch.randn(2, 8, DIM)
    kpm = torch.zeros(2, 8, dtype=torch.bool)
    kpm[0, 5:] = True
    y, _ = m(x, context=ctx, key_padding_mask=kpm)
    assert y.shape == (2, 3, DIM)
    ctx2 = ctx.clone()
    ctx2[0, 5:] = 7.0
    torch.testing.assert_close(m(x, context=ctx2, key_padding_mask=kpm)[0], y)
    with pytest.raises(ValueError, match="key_padding_mask"):
        m(x, context=ctx, key_padding_mask=kpm[:, :3])
    with pytest.raises(ValueError, match="self-attention"):
        make("softpag")(x, context=ctx)


@pytest.mark.parametrize("name", ["mha", "moh", "neighborhood"])
def test_transformer_block(name):
    torch.manual_seed(0)
    block = TransformerBlock(DIM, HEADS, name, mlp_ratio=2.0, **ACTIVE[name]).train()
    x = torch.randn(2, 8, DIM)
    kpm = torch.zeros(2, 8, dtype=torch.bool)
    kpm[1, 5:] = True
    y, aux = block(x, key_padding_mask=kpm)
    assert y.shape == x.shape
    assert ("loss_moh_balance" in aux) == (name == "moh")
    block.eval()
    y1, aux = block(x, key_padding_mask=kpm)
    assert aux == {}
    x2 = x.clone()
    x2[1, 5:] = 3.0
    torch.testing.assert_close(block(x2, key_padding_mask=kpm)[0][1, :5], y1[1, :5], atol=1e-5, rtol=0)
