"""Tile helpers of the fused attention kernels: which blocks a program visits, tile loads, scores, dropout.

A program owns one query block (forward, dq) or one key block (dk/dv) of one (batch, head); the
(N, D) slices of q, k, v, o and their gradients start at the offset _head returns.
"""

import triton
import triton.language as tl

from .family import NEG_INF, _pow_beta


@triton.jit
def _program(N, BLOCK: tl.constexpr):
    """(block, bh, blocks per head) of this program. The grid is one flat axis, the block index fastest (as
    a (blocks, B x H) grid would run): CUDA caps the grid's second axis at 65,535, the first at 2^31 - 1."""
    n_blocks = tl.cdiv(N, BLOCK)
    pid = tl.program_id(0)
    return pid % n_blocks, pid // n_blocks, n_blocks


@triton.jit
def _head(bh, H, HK, N, D):
    """Program bh's batch, head, keep-mask head and the offset of its (N, D) slices."""
    b = bh // H
    h = bh % H
    return b, h, h % HK, bh.to(tl.int64) * N * D


@triton.jit
def _n_blocks(NUM, hk, blk, n_outer, n_inner, HAS_KEEP: tl.constexpr):
    """How many blocks block blk visits: its entry in a block table (see block_tables), else all n_inner."""
    if HAS_KEEP:
        n = tl.load(NUM + hk * n_outer + blk)
    else:
        n = n_inner
    return n


@triton.jit
def _block_offsets(IDX, hk, blk, n_outer, n_inner, i, HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
    """Row offsets of the i-th block that block blk visits (the i-th kept one under a keep mask)."""
    if HAS_KEEP:
        j = tl.load(IDX + (hk * n_outer + blk) * n_inner + i)
    else:
        j = i
    return j * BLOCK + tl.arange(0, BLOCK)


@triton.jit
def _load_tile(PTR, rows, offs_d, N, D):
    """Rows `rows` of a row-major (N, D) slice, zeros outside it."""
    ok = (rows[:, None] < N) & (offs_d[None, :] < D)
    return tl.load(PTR + rows[:, None] * D + offs_d[None, :], mask=ok, other=0.0)


@triton.jit
def _store_tile(PTR, rows, offs_d, N, D, value):
    """Write a float32 tile into rows `rows` of a row-major (N, D) slice, in the slice's dtype."""
    tl.store(
        PTR + rows[:, None] * D + offs_d[None, :],
        value.to(PTR.dtype.element_ty),
        mask=(rows[:, None] < N) & (offs_d[None, :] < D),
    )


@triton.jit
def _load_row_stat(PTR, row, offs_m, N):
    """A saved per-row float32 statistic (tau, mass, delta) of the query rows offs_m."""
    return tl.load(PTR + row, mask=offs_m < N, other=0.0)


@triton.jit
def _dot(a, b, UPCAST: tl.constexpr, IEEE: tl.constexpr):
    # UPCAST: the interpreter's bf16 dot is wrong; on a GPU the native half dot is used.
    if UPCAST:
        r = tl.dot(a.to(tl.float32), b.to(tl.float32))
    elif IEEE:
        r = tl.dot(a, b, input_precision="ieee")
    else:
        r = tl.dot(a, b)
    return r


@triton.jit
def _keep_offsets(hk, offs_m, offs_n, N):
    """Offsets of a tile of the (HK, N, N) keep mask, in int64: hk * N^2 passes 2^31 at N ~ 13.4k, 12 heads."""
    return (hk.to(tl.int64) * N + offs_m[:, None]) * N + offs_n[None, :]


@triton.jit
def _scores(
    q,
    k,
    PAD,
    KEEP,
    b,
    hk,
    offs_m,
    offs_n,
    N,
    x_scale,
    HAS_PAD: tl.constexpr,
    HAS_KEEP: tl.constexpr,
    UPCAST: tl.constexpr,
    IEEE: tl.constexpr,
):
    """x = (alpha - 1) * normaliser scale * softmax scale * q k^T, -inf where not allowed."""
    x = _dot(q, tl.trans(k), UPCAST, IEEE) * x_scale
    ok = (offs_m[:, None] < N) & (offs_n[None, :] < N)
    if HAS_PAD:
        pad = tl.load(PAD + b * N + offs_n, mask=offs_n < N, other=1)
        ok = ok & (pad[None, :] == 0)
    if HAS_KEEP:
        keep = tl.load(KEEP + _keep_offsets(hk, offs_m, offs_n, N), mask=ok, other=0)
        ok = ok & (keep != 0)
    return tl.where(ok, x, NEG_INF)


@triton.jit
def _unnormalised(x, tau, beta, MODE: tl.constexpr):
    """max(x - tau, 0) ** beta per row: the probabilities times the row's mass."""
    return _pow_beta(tl.maximum(x - tau[:, None], 0.0), beta, MODE)


@triton.jit
def _probs(x, tau, mass, beta, MODE: tl.constexpr):
    """The forward's probabilities for one tile, from the saved threshold and mass."""
    pb = _unnormalised(x, tau, beta, MODE)
    return tl.where(mass[:, None] > 0, pb / tl.maximum(mass[:, None], 1e-30), 0.0)


@triton.jit
def _dropout_scale(seed, bh, offs_m, offs_n, N, p_drop):
    """1 / (1 - p) where the key survives dropout, else 0; the same numbers in every kernel."""
    r = tl.rand(seed + bh, offs_m[:, None] * N + offs_n[None, :])
    return tl.where(r >= p_drop, 1.0 / (1.0 - p_drop), 0.0)


@triton.jit
def dropout_scale_dense(OUT, seed, p_drop, H, N, BLOCK: tl.constexpr):
    """The dropout factors the attention kernels use, written out densely (for tests)."""
    qb = tl.program_id(0)
    bh = tl.program_id(1)
    offs_m = qb * BLOCK + tl.arange(0, BLOCK)
    for kb in range(0, tl.cdiv(N, BLOCK)):
        offs_n = kb * BLOCK + tl.arange(0, BLOCK)
        r = _dropout_scale(seed, bh, offs_m, offs_n, N, p_drop)
        ptr = OUT + (bh.to(tl.int64) * N + offs_m[:, None]) * N + offs_n[None, :]
        tl.store(ptr, r, mask=(offs_m[:, None] < N) & (offs_n[None, :] < N))
