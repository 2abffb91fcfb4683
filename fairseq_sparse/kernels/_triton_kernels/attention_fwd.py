"""Fused attention forward: per query block, find each row's threshold, then accumulate the values.

The (N x N) probabilities are never stored: every pass over the key blocks recomputes the score
tiles. Pass 0 takes the row maxima, the threshold passes run the family's Newton search (family.py)
until every row of the block is done, the output pass sums d ** beta v. Saves tau and the mass
A = sum d ** beta per row for the backward. n_bucket (next power of two of N) is only the autotuner's key.
"""

import triton
import triton.language as tl

from .family import NEG_INF, _alpha_of, _newton, _pow_beta, _pow_beta_m1
from .tiles import (
    _block_offsets,
    _dot,
    _dropout_scale,
    _head,
    _load_tile,
    _n_blocks,
    _program,
    _scores,
    _store_tile,
    _unnormalised,
)


@triton.jit
def attn_fwd(
    Q,
    K,
    V,
    O,
    TAU,
    MASS,
    SUPPORT,
    PASSES,
    ALPHA,
    PAD,
    KEEP,
    KV_NUM,
    KV_IDX,
    seed,
    p_drop,
    qk_scale,
    n_iter,
    tol,
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
    alpha = _alpha_of(ALPHA, h, MODE)
    beta = 1.0 / (alpha - 1.0)
    x_scale = qk_scale * (alpha - 1.0)
    n_blocks = _n_blocks(KV_NUM, hk, qb, n_qb, n_kb, HAS_KEEP)
    # pass 0: row maxima
    m = tl.full((BLOCK_M,), NEG_INF, tl.float32)
    for i in range(0, n_blocks):
        offs_n = _block_offsets(KV_IDX, hk, qb, n_qb, n_kb, i, HAS_KEEP, BLOCK_N)
        k = _load_tile(K + base, offs_n, offs_d, N, D)
        x = _scores(q, k, PAD, KEEP, b, hk, offs_m, offs_n, N, x_scale, HAS_PAD, HAS_KEEP, UPCAST, IEEE)
        m = tl.maximum(m, tl.max(x, 1))
    live = m > NEG_INF
    tau = tl.where(live, m - 1.0, 0.0)
    K_prev = tl.full((BLOCK_M,), -1.0, tl.float32)
    todo = tl.sum(live.to(tl.int32), 0)
    it = 0
    # threshold passes: each recomputes the score tiles
    while (todo > 0) & (it < n_iter):
        A = tl.zeros((BLOCK_M,), tl.float32)
        B = tl.zeros((BLOCK_M,), tl.float32)
        Kc = tl.zeros((BLOCK_M,), tl.float32)
        for i in range(0, n_blocks):
            offs_n = _block_offsets(KV_IDX, hk, qb, n_qb, n_kb, i, HAS_KEEP, BLOCK_N)
            k = _load_tile(K + base, offs_n, offs_d, N, D)
            x = _scores(q, k, PAD, KEEP, b, hk, offs_m, offs_n, N, x_scale, HAS_PAD, HAS_KEEP, UPCAST, IEEE)
            d = tl.maximum(x - tau[:, None], 0.0)
            A += tl.sum(_pow_beta(d, beta, MODE), 1)
            B += tl.sum(_pow_beta_m1(d, beta, MODE), 1)
            Kc += tl.sum(tl.where(d > 0, 1.0, 0.0), 1)
        tau, pending = _newton(tau, A, B, Kc, K_prev, beta, live, tol, MODE)
        K_prev = Kc
        todo = tl.sum(pending.to(tl.int32), 0)
        it += 1
    # output pass: O = sum_j d_j ** beta v_j / sum_j d_j ** beta
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    mass = tl.zeros((BLOCK_M,), tl.float32)
    support = tl.zeros((BLOCK_M,), tl.float32)
    for i in range(0, n_blocks):
        offs_n = _block_offsets(KV_IDX, hk, qb, n_qb, n_kb, i, HAS_KEEP, BLOCK_N)
        k = _load_tile(K + base, offs_n, offs_d, N, D)
        x = _scores(q, k, PAD, KEEP, b, hk, offs_m, offs_n, N, x_scale, HAS_PAD, HAS_KEEP, UPCAST, IEEE)
        pb = _unnormalised(x, tau, beta, MODE)
        mass += tl.sum(pb, 1)
        support += tl.sum(tl.where(pb > 0, 1.0, 0.0), 1)
        if DROPOUT:
            pb = pb * _dropout_scale(seed, bh, offs_m, offs_n, N, p_drop)
        v = _load_tile(V + base, offs_n, offs_d, N, D)
        acc += _dot(pb.to(v.dtype), v, UPCAST, IEEE)
    inv = tl.where(live, 1.0 / tl.maximum(mass, 1e-30), 0.0)
    _store_tile(O + base, offs_m, offs_d, N, D, acc * inv[:, None])
    row = bh.to(tl.int64) * N + offs_m
    tl.store(TAU + row, tau, mask=offs_m < N)
    tl.store(MASS + row, tl.where(live, mass, 0.0), mask=offs_m < N)
    tl.store(SUPPORT + row, support, mask=offs_m < N)
    tl.store(PASSES + bh * n_qb + qb, it)
