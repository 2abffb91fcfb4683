"""Fused attention backward: the forward's probabilities are recomputed from the saved tau and mass.

attn_bwd_dq (one program per query block) first finds delta = sum(s g) / sum(s) per row (and the
alpha-gradient sums), then dq; attn_bwd_dkdv (one program per key block) reads that delta back
and accumulates dk and dv over the query blocks that touch its key block. g = dL/dp = dO v^T,
s = p ** (2 - alpha), dz = s (g - delta); see family.py.
"""

import triton
import triton.language as tl

from .family import ENTMAX_ALPHA, _alpha_grad, _alpha_of, _plogp, _support_weight
from .tiles import (
    _block_offsets,
    _dot,
    _dropout_scale,
    _head,
    _load_row_stat,
    _load_tile,
    _n_blocks,
    _probs,
    _program,
    _scores,
    _store_tile,
)


@triton.jit
def _prob_grad(
    do, v, seed, bh, offs_m, offs_n, N, p_drop, DROPOUT: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr
):
    """g = dL/dp for one tile: dO v^T, through the forward's dropout."""
    g = _dot(do, tl.trans(v), UPCAST, IEEE)
    if DROPOUT:
        g = g * _dropout_scale(seed, bh, offs_m, offs_n, N, p_drop)
    return g


@triton.jit
def attn_bwd_dq(
    Q,
    K,
    V,
    DO,
    DQ,
    TAU,
    MASS,
    DELTA,
    GA,
    ALPHA,
    PAD,
    KEEP,
    KV_NUM,
    KV_IDX,
    seed,
    p_drop,
    qk_scale,
    H,
    N,
    D,
    HK,
    n_bucket,
    MODE: tl.constexpr,
    HAS_PAD: tl.constexpr,
    HAS_KEEP: tl.constexpr,
    DROPOUT: tl.constexpr,
    UPCAST: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    qb, bh, n_qb = _program(N, BLOCK_M)
    n_kb = tl.cdiv(N, BLOCK_N)
    b, h, hk, base = _head(bh, H, HK, N, D)
    offs_m = qb * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = _load_tile(Q + base, offs_m, offs_d, N, D)
    do = _load_tile(DO + base, offs_m, offs_d, N, D)
    row = bh.to(tl.int64) * N + offs_m
    tau = _load_row_stat(TAU, row, offs_m, N)
    mass = _load_row_stat(MASS, row, offs_m, N)
    alpha = _alpha_of(ALPHA, h, MODE)
    beta = 1.0 / (alpha - 1.0)
    x_scale = qk_scale * (alpha - 1.0)
    n_blocks = _n_blocks(KV_NUM, hk, qb, n_qb, n_kb, HAS_KEEP)
    # pass A: delta = sum(s g) / sum(s) per row (and the alpha-gradient sums)
    sg = tl.zeros((BLOCK_M,), tl.float32)
    ss = tl.zeros((BLOCK_M,), tl.float32)
    pg = tl.zeros((BLOCK_M,), tl.float32)
    plg = tl.zeros((BLOCK_M,), tl.float32)
    ent = tl.zeros((BLOCK_M,), tl.float32)
    for i in range(0, n_blocks):
        offs_n = _block_offsets(KV_IDX, hk, qb, n_qb, n_kb, i, HAS_KEEP, BLOCK_N)
        k = _load_tile(K + base, offs_n, offs_d, N, D)
        x = _scores(q, k, PAD, KEEP, b, hk, offs_m, offs_n, N, x_scale, HAS_PAD, HAS_KEEP, UPCAST, IEEE)
        p = _probs(x, tau, mass, beta, MODE)
        v = _load_tile(V + base, offs_n, offs_d, N, D)
        g = _prob_grad(do, v, seed, bh, offs_m, offs_n, N, p_drop, DROPOUT, UPCAST, IEEE)
        s = _support_weight(p, alpha, MODE)
        sg += tl.sum(s * g, 1)
        ss += tl.sum(s, 1)
        if MODE == ENTMAX_ALPHA:
            plogp = _plogp(p)
            pg += tl.sum(p * g, 1)
            plg += tl.sum(plogp * g, 1)
            ent += tl.sum(plogp, 1)
    delta = sg / tl.maximum(ss, 1e-30)
    tl.store(DELTA + row, delta, mask=offs_m < N)
    if MODE == ENTMAX_ALPHA:
        tl.store(GA + row, _alpha_grad(pg, plg, ent, delta, alpha), mask=offs_m < N)
    # pass B: dq = sum_j s_j (g_j - delta) k_j * qk_scale
    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for i in range(0, n_blocks):
        offs_n = _block_offsets(KV_IDX, hk, qb, n_qb, n_kb, i, HAS_KEEP, BLOCK_N)
        k = _load_tile(K + base, offs_n, offs_d, N, D)
        x = _scores(q, k, PAD, KEEP, b, hk, offs_m, offs_n, N, x_scale, HAS_PAD, HAS_KEEP, UPCAST, IEEE)
        p = _probs(x, tau, mass, beta, MODE)
        v = _load_tile(V + base, offs_n, offs_d, N, D)
        g = _prob_grad(do, v, seed, bh, offs_m, offs_n, N, p_drop, DROPOUT, UPCAST, IEEE)
        dz = _support_weight(p, alpha, MODE) * (g - delta[:, None])
        dq += _dot(dz.to(k.dtype), k, UPCAST, IEEE)
    _store_tile(DQ + base, offs_m, offs_d, N, D, dq * qk_scale)


@triton.jit
def attn_bwd_dkdv(
    Q,
    K,
    V,
    DO,
    DK,
    DV,
    TAU,
    MASS,
    DELTA,
    ALPHA,
    PAD,
    KEEP,
    Q_NUM,
    Q_IDX,
    seed,
    p_drop,
    qk_scale,
    H,
    N,
    D,
    HK,
    n_bucket,
    MODE: tl.constexpr,
    HAS_PAD: tl.constexpr,
    HAS_KEEP: tl.constexpr,
    DROPOUT: tl.constexpr,
    UPCAST: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    kb, bh, n_kb = _program(N, BLOCK_N)
    n_qb = tl.cdiv(N, BLOCK_M)
    b, h, hk, base = _head(bh, H, HK, N, D)
    offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    # this program's key block: loaded once, reused for every query block
    k = _load_tile(K + base, offs_n, offs_d, N, D)
    v = _load_tile(V + base, offs_n, offs_d, N, D)
    alpha = _alpha_of(ALPHA, h, MODE)
    beta = 1.0 / (alpha - 1.0)
    x_scale = qk_scale * (alpha - 1.0)
    n_blocks = _n_blocks(Q_NUM, hk, kb, n_kb, n_qb, HAS_KEEP)
    dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    for i in range(0, n_blocks):
        offs_m = _block_offsets(Q_IDX, hk, kb, n_kb, n_qb, i, HAS_KEEP, BLOCK_M)
        q = _load_tile(Q + base, offs_m, offs_d, N, D)
        do = _load_tile(DO + base, offs_m, offs_d, N, D)
        row = bh.to(tl.int64) * N + offs_m
        tau = _load_row_stat(TAU, row, offs_m, N)
        mass = _load_row_stat(MASS, row, offs_m, N)
        delta = _load_row_stat(DELTA, row, offs_m, N)
        x = _scores(q, k, PAD, KEEP, b, hk, offs_m, offs_n, N, x_scale, HAS_PAD, HAS_KEEP, UPCAST, IEEE)
        p = _probs(x, tau, mass, beta, MODE)
        g = _dot(do, tl.trans(v), UPCAST, IEEE)
        pd = p
        if DROPOUT:  # one draw of the dropout factors serves g and the dropped probabilities
            r = _dropout_scale(seed, bh, offs_m, offs_n, N, p_drop)
            g = g * r
            pd = p * r
        dv += _dot(tl.trans(pd.to(do.dtype)), do, UPCAST, IEEE)
        dz = _support_weight(p, alpha, MODE) * (g - delta[:, None])
        dk += _dot(tl.trans(dz.to(q.dtype)), q, UPCAST, IEEE)
    _store_tile(DK + base, offs_n, offs_d, N, D, dk * qk_scale)
    _store_tile(DV + base, offs_n, offs_d, N, D, dv)
