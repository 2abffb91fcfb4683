"""Fused sparse attention (scores, key padding, keep mask, entmax-family normaliser, dropout, values).

FlashAttention-style: the (N x N) probabilities are never stored. Each query block finds its
rows' thresholds by a few passes over the key blocks (row max, then Newton steps, see
_triton_kernels/family.py), then accumulates the values; the backward recomputes the probabilities from
the saved per-row threshold and mass. A keep mask is executed block-sparse: blocks of the mask
with no kept entry are skipped in every pass, forward and backward (see block_tables).
"""
import math

import torch

from ..normalizers import check_alpha, check_lam, entmax_family
from ._runtime import MODES, can_run, interpreting, kernels, next_pow2


def block_tables(keep, block_m, block_n):
    """Which key blocks each query block touches (and the transpose), from a (H or 1, T, S) keep mask.

    Returns kv_num (Hk, n_qb) int32, kv_idx (Hk, n_qb, n_kb) int32 (the touched key blocks
    first, ascending), q_num (Hk, n_kb), q_idx (Hk, n_kb, n_qb). Pure torch; no host sync.
    """
    if keep.dim() != 3 or keep.dtype != torch.bool:
        raise ValueError(f"keep must be a bool mask of shape (heads or 1, T, S), got {keep.dtype} {tuple(keep.shape)}")
    hk, t, s = keep.shape
    n_qb, n_kb = math.ceil(t / block_m), math.ceil(s / block_n)
    padded = keep.new_zeros((hk, n_qb * block_m, n_kb * block_n))
    padded[:, :t, :s] = keep
    blocks = padded.view(hk, n_qb, block_m, n_kb, block_n).any(dim=4).any(dim=2)  # (Hk, n_qb, n_kb)

    def table(b):
        num = b.sum(dim=-1, dtype=torch.int32)
        idx = torch.argsort((~b).to(torch.int8), dim=-1, stable=True).to(torch.int32)
        return num.contiguous(), idx.contiguous()

    kv_num, kv_idx = table(blocks)
    q_num, q_idx = table(blocks.transpose(1, 2))
    return kv_num, kv_idx, q_num, q_idx


def _blocks(d, device):
    if interpreting() and device.type == "cpu":
        return 16, 16  # small tiles keep the interpreter quick
    return (64, 64) if d <= 64 else (32, 32)


class _SparseAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, alpha, pad, keep, mode, qk_scale, dropout_p, n_iter, tol):
        tk = kernels()
        B, H, N, D = q.shape
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        bm, bn = _blocks(D, q.device)
        n_qb, n_kb = math.ceil(N / bm), math.ceil(N / bn)
        dev = q.device
        dummy_i = torch.zeros(1, dtype=torch.int32, device=dev)
        if keep is not None:
            tables = block_tables(keep, bm, bn)
            keep_u8 = keep.contiguous().view(torch.uint8)
            hk = keep.shape[0]
        else:
            tables, keep_u8, hk = (dummy_i,) * 4, dummy_i, 1
        pad_u8 = pad.contiguous().view(torch.uint8) if pad is not None else dummy_i
        alpha_h = alpha.detach().float().contiguous() if alpha is not None else torch.ones(1, device=dev)
        seed = int(torch.randint(0, 2 ** 30, (1,)).item()) if dropout_p > 0 else 0  # CPU generator: no device sync
        o = torch.empty_like(q)
        tau = torch.empty((B, H, N), dtype=torch.float32, device=dev)
        mass, support = torch.empty_like(tau), torch.empty_like(tau)
        passes = torch.empty((B, H, n_qb), dtype=torch.int32, device=dev)
        flags = dict(MODE=mode, HAS_PAD=pad is not None, HAS_KEEP=keep is not None, DROPOUT=dropout_p > 0,
                     UPCAST=interpreting() and dev.type == "cpu", IEEE=q.dtype == torch.float32,
                     BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=max(16, next_pow2(D)))
        tk.attn_fwd[(n_qb, B * H)](q, k, v, o, tau, mass, support, passes, alpha_h, pad_u8, keep_u8, tables[0], tables[1],
                                   seed, float(dropout_p), qk_scale, n_iter, tol, H, N, D, hk, n_qb, n_kb, **flags)
        ctx.save_for_backward(q, k, v, tau, mass, alpha_h, pad_u8, keep_u8, *tables)
        ctx.meta = (seed, float(dropout_p), qk_scale, hk, n_qb, n_kb, flags, ctx.needs_input_grad[3])
        ctx.mark_non_differentiable(support, passes)
        return o, support, passes

    @staticmethod
    def backward(ctx, do, _support_grad, _passes_grad):
        tk = kernels()
        q, k, v, tau, mass, alpha_h, pad_u8, keep_u8, kv_num, kv_idx, q_num, q_idx = ctx.saved_tensors
        seed, p_drop, qk_scale, hk, n_qb, n_kb, flags, alpha_grad = ctx.meta
        B, H, N, D = q.shape
        do = do.contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        delta = torch.empty_like(tau)
        ga = torch.empty_like(tau) if flags["MODE"] == 2 else delta
        tk.attn_bwd_dq[(n_qb, B * H)](q, k, v, do, dq, tau, mass, delta, ga, alpha_h, pad_u8, keep_u8, kv_num, kv_idx,
                                      seed, p_drop, qk_scale, H, N, D, hk, n_qb, n_kb, **flags)
        tk.attn_bwd_dkdv[(n_kb, B * H)](q, k, v, do, dk, dv, tau, mass, delta, alpha_h, pad_u8, keep_u8, q_num, q_idx,
                                        seed, p_drop, qk_scale, H, N, D, hk, n_qb, n_kb, **flags)
        grad_alpha = ga.sum(dim=(0, 2)) if alpha_grad else None
        return dq, dk, dv, grad_alpha, None, None, None, None, None, None, None


def sparse_attention(q, k, v, normalizer, scale=None, lam=0.0, alpha=1.5, key_padding_mask=None, keep=None,
                     dropout_p=0.0, n_iter=None, tol=1e-6, return_stats=False):
    """normalizer(scale * q k^T, masked) @ v in one fused kernel, forward and backward.

    q, k, v: (B, H, N, D) float16 / bfloat16 / float32 on CUDA (or CPU under TRITON_INTERPRET=1).
    normalizer: sparsemax, sparsegen_lin (lam), entmax15, entmax_bisect (alpha: float or a (H,)
    tensor, e.g. learned per head; it gets a gradient). key_padding_mask: (B, N) bool, True = pad.
    keep: bool (H or 1, N, N), True = may attend; its empty blocks are skipped. dropout_p: dropout
    on the probabilities (inverted scaling, as nn.Dropout). A row with no allowed key gives zeros.
    return_stats: also return {"support": non-zero probabilities per row (B, H, N) float32,
    "passes": threshold passes over the keys per query block (B, H, blocks) int32}.
    """
    if normalizer not in MODES:
        raise ValueError(f"sparse_attention: normalizer {normalizer!r} is not one of {sorted(MODES)}")
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"sparse_attention: q, k, v must share one (B, H, N, D) shape, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"sparse_attention: expected float16/bfloat16/float32 q, k, v of one dtype, got "
                         f"{q.dtype}, {k.dtype}, {v.dtype}")
    if not can_run(q):
        raise ValueError(f"sparse_attention: needs triton and CUDA tensors (CPU ones only under "
                         f"kernels.interpret_on_cpu), got a {q.device.type} tensor")
    lam = check_lam(lam, "sparse_attention: lam")
    if not 0.0 <= float(dropout_p) < 1.0:
        raise ValueError(f"sparse_attention: dropout_p must be in [0, 1), got {dropout_p}")
    B, H, N, D = q.shape
    mode = MODES[normalizer]
    scale = D ** -0.5 if scale is None else float(scale)
    qk_scale = scale * entmax_family(normalizer, lam)[1]  # sparsegen-lin: sparsemax of scores / (1 - lam)
    alpha_h = None
    if mode == 2:
        if isinstance(alpha, torch.Tensor):
            alpha_h = alpha.reshape(-1).to(device=q.device, dtype=torch.float32)
            if alpha_h.numel() == 1:
                alpha_h = alpha_h.expand(H)
            if alpha_h.numel() != H:
                raise ValueError(f"sparse_attention: alpha must have one value per head ({H}), got shape {tuple(alpha.shape)}")
        else:
            alpha_h = torch.full((H,), check_alpha(alpha, "sparse_attention: alpha"), device=q.device)
    pad = None
    if key_padding_mask is not None:
        pad = key_padding_mask.to(device=q.device, dtype=torch.bool)
        if pad.shape != (B, N):
            raise ValueError(f"sparse_attention: key_padding_mask must be (B, N) = {(B, N)}, got {tuple(pad.shape)}")
    if keep is not None:
        if keep.dtype != torch.bool:
            raise ValueError(f"sparse_attention: keep must be a bool mask, got {keep.dtype}")
        keep = keep.to(q.device)
        if keep.dim() == 2:
            keep = keep[None]
        if keep.dim() == 4 and keep.shape[0] == 1:
            keep = keep[0]
        if keep.dim() != 3 or keep.shape[0] not in (1, H) or keep.shape[1:] != (N, N):
            raise ValueError(f"sparse_attention: keep must be (N, N), (1 or H, N, N) or (1, 1 or H, N, N) with "
                             f"N = {N}, H = {H}; got {tuple(keep.shape)}")
    n_iter = (50 if n_iter is None else int(n_iter)) if mode == 2 else N + 2
    out, support, passes = _SparseAttention.apply(q, k, v, alpha_h, pad, keep, mode, qk_scale, float(dropout_p),
                                                  n_iter, float(tol))
    return (out, {"support": support, "passes": passes}) if return_stats else out


def dropout_factors(batch, heads, n, seed, p, device):
    """The (batch, heads, n, n) dropout factors sparse_attention uses for a seed (for tests)."""
    out = torch.empty((batch, heads, n, n), dtype=torch.float32, device=device)
    block = 16
    kernels().dropout_scale_dense[(math.ceil(n / block), batch * heads)](out, seed, float(p), heads, n, BLOCK=block)
    return out
