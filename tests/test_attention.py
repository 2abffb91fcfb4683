"""SparseMultiheadAttention: stock equivalence, normalisers, masks and per-head hooks."""

import pytest
import torch
from fairseq.modules import MultiheadAttention

from fairseq_sparse.modules.sparse_multihead_attention import SparseMultiheadAttention

T, B, C, H = 7, 3, 16, 4


def make(normalizer="softmax", **kw):
    torch.manual_seed(0)
    stock = MultiheadAttention(C, H, self_attention=True).eval()
    ours = SparseMultiheadAttention(C, H, self_attention=True, normalizer=normalizer, **kw).eval()
    missing, unexpected = ours.load_state_dict(stock.state_dict(), strict=False)
    assert unexpected == [] and all("entmax_alpha_logit" in k for k in missing)
    return stock, ours


def inputs():
    torch.manual_seed(1)
    x = torch.randn(T, B, C)
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[1, 5:] = True
    return x, pad


def test_softmax_is_stock_fast_path_and_manual_path_agrees():
    stock, ours = make()
    x, pad = inputs()
    ref, ref_w = stock(x, x, x, key_padding_mask=pad, need_weights=True)
    out, w = ours(x, x, x, key_padding_mask=pad, need_weights=True)
    assert torch.equal(out, ref) and torch.equal(w, ref_w)
    ours.capture_attention = True  # forces the module's own scores -> softmax -> values path
    out2, w2 = ours(x, x, x, key_padding_mask=pad, need_weights=True)
    assert torch.allclose(out2, ref, atol=1e-6) and torch.allclose(w2, ref_w, atol=1e-6)
    assert ours.last_attention.shape == (B, H, T, T)


@pytest.mark.parametrize("normalizer", ["sparsemax", "sparsegen_lin", "entmax15", "entmax_bisect"])
def test_sparse_normalizer_probabilities(normalizer):
    _, ours = make(normalizer, sparsegen_lambda=-2.0)
    ours.capture_attention = True
    x, pad = inputs()
    x = x * 20  # peaked scores so the sparse maps have zeros
    out, w = ours(x, x, x, key_padding_mask=pad, need_weights=True, need_head_weights=True)
    assert w.shape == (H, B, T, T)  # fairseq's per-head layout
    p = ours.last_attention
    assert torch.allclose(p.sum(-1), torch.ones(B, H, T), atol=1e-5)
    assert (p[1, :, :, 5:] == 0).all(), "padded keys get exactly zero"
    assert (p == 0).any(), f"{normalizer} should produce exact zeros"
    assert torch.isfinite(out).all()
    # gradients reach the projections
    ours.train()
    ours.dropout_module.p = 0.0
    x = x / 20  # one-hot rows (support 1) would have an exactly zero Jacobian
    out, _ = ours(x, x, x, key_padding_mask=pad, need_weights=False)
    out.pow(2).sum().backward()
    assert ours.q_proj.weight.grad.abs().sum() > 0


def test_learned_alpha_gets_gradient_and_stays_in_range():
    _, ours = make("entmax_bisect", learn_entmax_alpha=True, entmax_alpha=1.5)
    ours.train()
    x, pad = inputs()
    out, _ = ours(x, x, x, key_padding_mask=pad, need_weights=False)
    out.pow(2).sum().backward()
    assert ours.entmax_alpha_logit.grad is not None and ours.entmax_alpha_logit.grad.abs().sum() > 0
    with torch.no_grad():
        ours.entmax_alpha_logit.fill_(50.0)
    alpha = ours.entmax_alpha_per_head()
    assert (alpha > 1).all() and (alpha <= 2).all()


def test_head_gates_and_uniform_heads():
    _, ours = make()
    x, pad = inputs()
    ours.capture_attention = True
    base, _ = ours(x, x, x, key_padding_mask=pad)
    ours.set_head_gates([1, 0, 1, 1])
    gated, _ = ours(x, x, x, key_padding_mask=pad)
    assert not torch.allclose(base, gated)
    # a gated-off head contributes nothing: zeroing its out_proj columns gives the same output
    ours.set_head_gates([1, 1, 1, 1])
    d = C // H
    with torch.no_grad():
        saved = ours.out_proj.weight[:, d : 2 * d].clone()
        ours.out_proj.weight[:, d : 2 * d] = 0
    zeroed, _ = ours(x, x, x, key_padding_mask=pad)
    assert torch.allclose(zeroed, gated, atol=1e-6)
    with torch.no_grad():
        ours.out_proj.weight[:, d : 2 * d] = saved
    ours.set_uniform_heads([2])
    ours(x, x, x, key_padding_mask=pad)
    p = ours.last_attention
    assert torch.allclose(p[1, 2, :, :5], torch.full((T, 5), 0.2)) and (p[1, 2, :, 5:] == 0).all()
    assert torch.allclose(p[0, 2], torch.full((T, T), 1 / T))
    with pytest.raises(ValueError, match="head index 9"):
        ours.set_uniform_heads([9])
    with pytest.raises(ValueError, match="shape"):
        ours.set_head_gates([1, 0])


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax"])
def test_bool_keep_mask_fused_and_manual_agree(normalizer):
    _, ours = make(normalizer)
    x, pad = inputs()
    keep = ~torch.eye(T, dtype=torch.bool)[None]  # no diagonal
    ours.set_keep_mask_fn(lambda t, s: keep[:, :t, :s])
    fused, _ = ours(x, x, x, key_padding_mask=pad, need_weights=False)
    ours.capture_attention = True
    manual, _ = ours(x, x, x, key_padding_mask=pad, need_weights=False)
    assert torch.allclose(fused, manual, atol=1e-6)
    p = ours.last_attention
    assert (p.diagonal(dim1=-2, dim2=-1) == 0).all()
    assert torch.allclose(p.sum(-1), torch.ones(B, H, T), atol=1e-5)


def test_straight_through_float_mask_softmax_product_form():
    _, ours = make()
    ours.capture_attention = True
    x, pad = inputs()
    soft = torch.rand(H, T, T, requires_grad=True)
    hard = (soft > 0.5).float()
    st = hard + soft - soft.detach()
    ours.set_keep_mask_fn(lambda t, s: st)
    out, _ = ours(x, x, x, key_padding_mask=pad)
    p = ours.last_attention
    hard_b = hard.bool()[None].expand(B, H, T, T) & ~pad[:, None, None, :]
    assert (p[~hard_b] == 0).all()
    out.pow(2).sum().backward()
    dropped = ~hard.bool()
    assert soft.grad[dropped].abs().sum() > 0, "dropped positions must still receive a gradient"


def test_not_self_attention_is_rejected_for_sparse():
    ours = SparseMultiheadAttention(C, H, encoder_decoder_attention=True, normalizer="sparsemax")
    x, _ = inputs()
    with pytest.raises(NotImplementedError, match="self-attention"):
        ours(x, x, x)


def test_bad_options_fail_with_value():
    with pytest.raises(ValueError, match="'sortmax'"):
        SparseMultiheadAttention(C, H, self_attention=True, normalizer="sortmax")
    with pytest.raises(ValueError, match="1.0"):
        SparseMultiheadAttention(C, H, self_attention=True, normalizer="sparsegen_lin", sparsegen_lambda=1.0)
    with pytest.raises(ValueError, match="2.5"):
        SparseMultiheadAttention(C, H, self_attention=True, normalizer="entmax_bisect", entmax_alpha=2.5)
    with pytest.raises(ValueError, match="entmax_bisect"):
        SparseMultiheadAttention(C, H, self_attention=True, normalizer="sparsemax", learn_entmax_alpha=True)
    with pytest.raises(ValueError, match=r"--sparsity-schedule-start-alpha must be in \(1, 2\], got 0.0"):
        SparseMultiheadAttention(C, H, self_attention=True, normalizer="entmax_bisect", entmax_alpha_start=0.0)
    with pytest.raises(ValueError, match="--sparsity-schedule-updates anneals .* --learn-entmax-alpha"):
        SparseMultiheadAttention(
            C, H, self_attention=True, normalizer="entmax_bisect", learn_entmax_alpha=True, entmax_alpha_start=1.05
        )


def test_fully_masked_rows_attend_to_nothing_on_every_path():
    """One rule: a row whose keys are all masked has probabilities 0 and attention output 0, on
    the fused SDPA path (evaluation with a frozen mask), the module's own path (extract_attention)
    and masked_normalize (training with a straight-through DAM sample)."""
    _, ours = make()
    x, pad = inputs()
    keep = torch.ones(1, T, T, dtype=torch.bool)
    keep[0, 2] = False  # query 2 may attend to no key at all
    keep[0, 5:, :5] = False  # queries 5, 6 keep only keys 5, 6: padding in sequence 1
    ours.set_keep_mask_fn(lambda t, s: keep[:, :t, :s])
    fused, _ = ours(x, x, x, key_padding_mask=pad, need_weights=False)
    ours.train()
    ours.dropout_module.p = 0.0
    fused_train, _ = ours(x, x, x, key_padding_mask=pad, need_weights=False)
    ours.eval()
    ours.capture_attention = True
    manual, _ = ours(x, x, x, key_padding_mask=pad, need_weights=False)
    p = ours.last_attention
    st = keep.float().requires_grad_()  # a 0/1 float mask as a DAM sample is: masked_normalize
    ours.set_keep_mask_fn(lambda t, s: st[:, :t, :s])
    ours.capture_attention = False
    product, _ = ours(x, x, x, key_padding_mask=pad, need_weights=True)
    empty_rows = [(b, 2) for b in range(B)] + [(1, 5), (1, 6)]
    for b, t in empty_rows:
        assert (p[b, :, t] == 0).all()
        for out in (fused, fused_train, manual, product):
            assert torch.equal(out[t, b], ours.out_proj.bias.detach())  # attention output 0, then out_proj
    for other in (fused_train, manual, product):
        assert torch.allclose(fused, other, atol=1e-6)
    (product * torch.randn_like(product)).sum().backward()
    assert torch.isfinite(st.grad).all() and st.grad[0, 2].abs().sum() > 0  # a DAM can switch keys back on


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax", "sparsegen_lin", "entmax15", "entmax_bisect"])
def test_fully_masked_row_zero_output_and_zero_gradient(normalizer):
    from fairseq_sparse.masks.masked_normalize import masked_normalize
    from fairseq_sparse.normalizers import get_normalizer

    kw = {"lam": -1.0} if normalizer == "sparsegen_lin" else {"alpha": 1.3} if normalizer == "entmax_bisect" else {}
    fn = get_normalizer(normalizer, **kw)
    torch.manual_seed(0)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        x = torch.randn(3, 5, dtype=torch.float64).to(dtype)
        x[1] = float("-inf")  # fully masked
        x[2, :3] = float("-inf")  # partly masked
        x.requires_grad_()
        p = fn(x, dim=-1)
        assert (p[1] == 0).all() and (p[2, :3] == 0).all()
        assert torch.allclose(p[[0, 2]].double().sum(-1), torch.ones(2, dtype=torch.float64), atol=1e-2)
        (p * torch.arange(5.0, dtype=dtype)).sum().backward()
        assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all(), (normalizer, dtype, x.grad)
    scores = torch.randn(1, 1, 2, 4, requires_grad=True)
    keep = torch.tensor([[True, True, False, False], [False, False, False, False]])
    p = masked_normalize(
        scores,
        keep,
        normalizer,
        **({"lam": -1.0} if normalizer == "sparsegen_lin" else {"alpha": 1.3} if normalizer == "entmax_bisect" else {}),
    )
    p.pow(2).sum().backward()
    assert (p[0, 0, 1] == 0).all() and torch.isfinite(scores.grad).all() and (scores.grad[0, 0, 1] == 0).all()


def test_flex_attention_gives_masked_rows_zero_too():
    """The CUDA path for softmax with a frozen mask (FlexAttention; its CPU forward here) follows
    the same rule: rows with no allowed key give 0, the others the masked softmax."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    from fairseq_sparse.kernels import flex_softmax_attention
    from fairseq_sparse.normalizers import softmax

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, H, T, 8) for _ in range(3))
    _, pad = inputs()
    keep = torch.ones(1, T, T, dtype=torch.bool)
    keep[0, 2] = False
    keep[0, 5:, :5] = False
    out = flex_softmax_attention(q, k, v, keep, pad[:2], scale=0.35)
    scores = (q @ k.transpose(-1, -2) * 0.35).masked_fill(~keep, float("-inf"))
    scores = scores.masked_fill(pad[:2, None, None, :], float("-inf"))
    assert torch.allclose(out, softmax(scores) @ v, atol=1e-5)
    assert (out[:, :, 2] == 0).all() and (out[1, :, 5:] == 0).all()
