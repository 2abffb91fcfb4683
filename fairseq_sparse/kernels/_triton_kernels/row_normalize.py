"""The row normaliser kernels: one program holds a whole row and runs the family's search to its end.

Row offsets are int64 (row * n_cols passes 2^31 on large batches); the grid is the rows, on axis 0."""

import triton
import triton.language as tl

from .family import (
    ENTMAX_ALPHA,
    NEG_INF,
    _alpha_grad,
    _alpha_of,
    _newton,
    _plogp,
    _pow_beta,
    _pow_beta_m1,
    _support_weight,
)


@triton.jit
def _row_offsets(n_cols, BLOCK: tl.constexpr):
    """This program's row, and the offsets of its columns: int64, rows x n_cols passes 2^31 on large batches."""
    row = tl.program_id(0).to(tl.int64)
    return row, row * n_cols + tl.arange(0, BLOCK)


@triton.jit
def row_normalize_fwd(X, P, ALPHA, n_cols, scale, n_iter, tol, MODE: tl.constexpr, BLOCK: tl.constexpr):
    row, offs = _row_offsets(n_cols, BLOCK)
    cols = tl.arange(0, BLOCK)
    z = tl.load(X + offs, mask=cols < n_cols, other=NEG_INF).to(tl.float32) * scale
    alpha = _alpha_of(ALPHA, row, MODE)
    beta = 1.0 / (alpha - 1.0)
    x = z * (alpha - 1.0)
    m = tl.max(x, 0)
    live = m > NEG_INF
    tau = tl.where(live, m - 1.0, 0.0)
    K_prev = -1.0
    pending = live
    it = 0
    while pending & (it < n_iter):
        d = tl.maximum(x - tau, 0.0)
        A = tl.sum(_pow_beta(d, beta, MODE), 0)
        B = tl.sum(_pow_beta_m1(d, beta, MODE), 0)
        K = tl.sum(tl.where(d > 0, 1.0, 0.0), 0)
        tau, pending = _newton(tau, A, B, K, K_prev, beta, live, tol, MODE)
        K_prev = K
        it += 1
    pb = _pow_beta(tl.maximum(x - tau, 0.0), beta, MODE)
    p = tl.where(live, pb / tl.maximum(tl.sum(pb, 0), 1e-30), 0.0)
    tl.store(P + offs, p, mask=cols < n_cols)


@triton.jit
def row_normalize_bwd(P, G, DZ, ALPHA, GA, n_cols, scale, MODE: tl.constexpr, BLOCK: tl.constexpr):
    row, offs = _row_offsets(n_cols, BLOCK)
    ok = tl.arange(0, BLOCK) < n_cols
    p = tl.load(P + offs, mask=ok, other=0.0)
    g = tl.load(G + offs, mask=ok, other=0.0).to(tl.float32)
    alpha = _alpha_of(ALPHA, row, MODE)
    s = _support_weight(p, alpha, MODE)
    delta = tl.sum(s * g, 0) / tl.maximum(tl.sum(s, 0), 1e-30)
    tl.store(DZ + offs, s * (g - delta) * scale, mask=ok)
    if MODE == ENTMAX_ALPHA:
        plogp = _plogp(p)
        tl.store(GA + row, _alpha_grad(tl.sum(p * g, 0), tl.sum(g * plogp, 0), tl.sum(plogp, 0), delta, alpha))
