"""Triton kernels for the entmax family: row-wise normalisers and fused attention.

Imported lazily by fairseq_sparse.kernels (only when triton is importable), so that
TRITON_INTERPRET=1 can be set before the kernels are decorated.

One threshold search serves the whole family. With x = (alpha - 1) * z and beta = 1 / (alpha - 1),
p_j = max(x_j - tau, 0) ** beta and tau solves f(tau) = sum_j p_j - 1 = 0. f is convex and
decreasing, so Newton's method started at max(x) - 1 (left of the root) climbs to it without
overshooting. Every pass accumulates, per row, A = sum d ** beta, B = sum d ** (beta - 1) and the
support size K (d = max(x - tau, 0)); the Newton step is (A - 1) / (beta * B).
  MODE 0, sparsemax (beta = 1): the step is Michelot's exact support update; stop when K stops
          changing (tau is then exact).
  MODE 1, entmax-1.5 (beta = 2): once K is unchanged between passes, jump to the closed-form
          root for that support, tau = mean_S x - sqrt(1 / K - var_S x); stop when A = 1 within tol
          or the update is a few ulps of tau.
  MODE 2, alpha-entmax (alpha per row or per head): Newton until A = 1 within tol, or the step is a
          few ulps of tau, or n_iter passes.
The output is d ** beta / A (A at the final tau), so rows always sum to 1. A row with no allowed
entry (max x = -inf) gives zeros and zero gradients.

Backward of the family from the output alone: with s = p ** (2 - alpha) on the support,
dz = s * (g - delta), delta = sum(s * g) / sum(s). For alpha-entmax the alpha gradient of a row is
(sum p g - delta) / (alpha - 1)^2 - (sum g p log p - delta * H) / (alpha - 1), H = sum p log p.
"""
import triton
import triton.language as tl

NEG_INF = tl.constexpr(float("-inf"))


@triton.jit
def _pow_beta(d, beta, MODE: tl.constexpr):
    """d ** beta for d >= 0."""
    if MODE == 0:
        r = d
    elif MODE == 1:
        r = d * d
    else:
        r = tl.where(d > 0, tl.exp2(beta * tl.log2(tl.maximum(d, 1e-30))), 0.0)
    return r


@triton.jit
def _pow_beta_m1(d, beta, MODE: tl.constexpr):
    """d ** (beta - 1) on the support, 0 off it (0 ** 0 must not count)."""
    if MODE == 0:
        r = tl.where(d > 0, 1.0, 0.0)
    elif MODE == 1:
        r = d
    else:
        r = tl.where(d > 0, tl.exp2((beta - 1.0) * tl.log2(tl.maximum(d, 1e-30))), 0.0)
    return r


@triton.jit
def _support_weight(p, alpha, MODE: tl.constexpr):
    """s = p ** (2 - alpha) on the support."""
    if MODE == 0:
        r = tl.where(p > 0, 1.0, 0.0)
    elif MODE == 1:
        r = tl.sqrt(p)
    else:
        r = tl.where(p > 0, tl.exp2((2.0 - alpha) * tl.log2(tl.maximum(p, 1e-30))), 0.0)
    return r


@triton.jit
def _newton(tau, A, B, K, K_prev, beta, live, tol, MODE: tl.constexpr):
    """One update of the threshold from the pass statistics; returns (tau, pending)."""
    step = (A - 1.0) / (beta * tl.maximum(B, 1e-30))
    if MODE == 0:
        pending = live & (K != K_prev)
        new_tau = tau + step
    elif MODE == 1:
        kk = tl.maximum(K, 1.0)
        mean = B / kk
        var = tl.maximum(A / kk - mean * mean, 0.0)
        closed = tau + mean - tl.sqrt(tl.maximum(1.0 / kk - var, 0.0))
        new_tau = tl.where(K == K_prev, closed, tau + step)
        # done: the row sums to 1 within tol, or the update is a few ulps of tau (float32 cannot
        # get closer; the output's renormalisation absorbs the rest)
        pending = live & (tl.abs(A - 1.0) > tol) & (tl.abs(new_tau - tau) > 4.8e-7 * (tl.abs(tau) + 1.0))
    else:
        pending = live & (tl.abs(A - 1.0) > tol) & (tl.abs(step) > 4.8e-7 * (tl.abs(tau) + 1.0))
        new_tau = tau + step
    return tl.where(pending, new_tau, tau), pending


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


# ----- row-wise normaliser -----------------------------------------------------------------

@triton.jit
def rowwise_fwd(X, P, ALPHA, n_cols, scale, n_iter, tol, MODE: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    z = tl.load(X + row * n_cols + cols, mask=cols < n_cols, other=NEG_INF).to(tl.float32) * scale
    if MODE == 0:
        alpha = 2.0
    elif MODE == 1:
        alpha = 1.5
    else:
        alpha = tl.load(ALPHA + row)
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
    tl.store(P + row * n_cols + cols, p, mask=cols < n_cols)


@triton.jit
def rowwise_bwd(P, G, DZ, ALPHA, GA, n_cols, scale, MODE: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ok = cols < n_cols
    p = tl.load(P + row * n_cols + cols, mask=ok, other=0.0)
    g = tl.load(G + row * n_cols + cols, mask=ok, other=0.0).to(tl.float32)
    if MODE == 0:
        alpha = 2.0
    elif MODE == 1:
        alpha = 1.5
    else:
        alpha = tl.load(ALPHA + row)
    s = _support_weight(p, alpha, MODE)
    delta = tl.sum(s * g, 0) / tl.maximum(tl.sum(s, 0), 1e-30)
    tl.store(DZ + row * n_cols + cols, s * (g - delta) * scale, mask=ok)
    if MODE == 2:
        plogp = tl.where(p > 0, p * tl.log(tl.maximum(p, 1e-30)), 0.0)
        am1 = alpha - 1.0
        ga = (tl.sum(p * g, 0) - delta) / (am1 * am1) - (tl.sum(g * plogp, 0) - delta * tl.sum(plogp, 0)) / am1
        tl.store(GA + row, ga)


# ----- fused attention --------------------------------------------------------------------

@triton.jit
def _x_tile(q, K, PAD, KEEP, b, hk, offs_m, offs_n, N, D, x_scale,
            HAS_PAD: tl.constexpr, HAS_KEEP: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr,
            BLOCK_D: tl.constexpr):
    """x = (alpha - 1) * normaliser scale * softmax scale * q k^T, -inf where not allowed."""
    offs_d = tl.arange(0, BLOCK_D)
    k = tl.load(K + offs_n[:, None] * D + offs_d[None, :], mask=(offs_n[:, None] < N) & (offs_d[None, :] < D), other=0.0)
    x = _dot(q, tl.trans(k), UPCAST, IEEE) * x_scale
    ok = (offs_m[:, None] < N) & (offs_n[None, :] < N)
    if HAS_PAD:
        pad = tl.load(PAD + b * N + offs_n, mask=offs_n < N, other=1)
        ok = ok & (pad[None, :] == 0)
    if HAS_KEEP:
        keep = tl.load(KEEP + (hk * N + offs_m[:, None]) * N + offs_n[None, :], mask=ok, other=0)
        ok = ok & (keep != 0)
    return tl.where(ok, x, NEG_INF)


@triton.jit
def _dropout_scale(seed, bh, offs_m, offs_n, N, p_drop):
    """1 / (1 - p) where the key survives dropout, else 0; the same numbers in every kernel."""
    r = tl.rand(seed + bh, offs_m[:, None] * N + offs_n[None, :])
    return tl.where(r >= p_drop, 1.0 / (1.0 - p_drop), 0.0)


@triton.jit
def attn_fwd(Q, K, V, O, TAU, MASS, SUPPORT, PASSES, ALPHA, PAD, KEEP, KV_NUM, KV_IDX,
             seed, p_drop, qk_scale, n_iter, tol, H, N, D, HK, n_qb, n_kb,
             MODE: tl.constexpr, HAS_PAD: tl.constexpr, HAS_KEEP: tl.constexpr, DROPOUT: tl.constexpr,
             UPCAST: tl.constexpr, IEEE: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    qb = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    hk = h % HK
    base = bh.to(tl.int64) * N * D
    offs_m = qb * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = tl.load(Q + base + offs_m[:, None] * D + offs_d[None, :], mask=(offs_m[:, None] < N) & (offs_d[None, :] < D), other=0.0)
    if MODE == 0:
        alpha = 2.0
    elif MODE == 1:
        alpha = 1.5
    else:
        alpha = tl.load(ALPHA + h)
    beta = 1.0 / (alpha - 1.0)
    x_scale = qk_scale * (alpha - 1.0)
    if HAS_KEEP:
        n_blocks = tl.load(KV_NUM + hk * n_qb + qb)
    else:
        n_blocks = n_kb
    # pass 0: row maxima
    m = tl.full((BLOCK_M,), NEG_INF, tl.float32)
    for i in range(0, n_blocks):
        if HAS_KEEP:
            kb = tl.load(KV_IDX + (hk * n_qb + qb) * n_kb + i)
        else:
            kb = i
        offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
        x = _x_tile(q, K + base, PAD, KEEP, b, hk, offs_m, offs_n, N, D, x_scale, HAS_PAD, HAS_KEEP, UPCAST, IEEE, BLOCK_D)
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
            if HAS_KEEP:
                kb = tl.load(KV_IDX + (hk * n_qb + qb) * n_kb + i)
            else:
                kb = i
            offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
            x = _x_tile(q, K + base, PAD, KEEP, b, hk, offs_m, offs_n, N, D, x_scale, HAS_PAD, HAS_KEEP, UPCAST, IEEE, BLOCK_D)
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
        if HAS_KEEP:
            kb = tl.load(KV_IDX + (hk * n_qb + qb) * n_kb + i)
        else:
            kb = i
        offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
        x = _x_tile(q, K + base, PAD, KEEP, b, hk, offs_m, offs_n, N, D, x_scale, HAS_PAD, HAS_KEEP, UPCAST, IEEE, BLOCK_D)
        pb = _pow_beta(tl.maximum(x - tau[:, None], 0.0), beta, MODE)
        mass += tl.sum(pb, 1)
        support += tl.sum(tl.where(pb > 0, 1.0, 0.0), 1)
        if DROPOUT:
            pb = pb * _dropout_scale(seed, bh, offs_m, offs_n, N, p_drop)
        v = tl.load(V + base + offs_n[:, None] * D + offs_d[None, :], mask=(offs_n[:, None] < N) & (offs_d[None, :] < D), other=0.0)
        acc += _dot(pb.to(v.dtype), v, UPCAST, IEEE)
    inv = tl.where(live, 1.0 / tl.maximum(mass, 1e-30), 0.0)
    out = acc * inv[:, None]
    tl.store(O + base + offs_m[:, None] * D + offs_d[None, :], out.to(O.dtype.element_ty), mask=(offs_m[:, None] < N) & (offs_d[None, :] < D))
    row = bh.to(tl.int64) * N + offs_m
    tl.store(TAU + row, tau, mask=offs_m < N)
    tl.store(MASS + row, tl.where(live, mass, 0.0), mask=offs_m < N)
    tl.store(SUPPORT + row, support, mask=offs_m < N)
    tl.store(PASSES + bh * n_qb + qb, it)


@triton.jit
def _p_tile(q, K, PAD, KEEP, b, hk, offs_m, offs_n, N, D, x_scale, tau, mass, beta,
            MODE: tl.constexpr, HAS_PAD: tl.constexpr, HAS_KEEP: tl.constexpr, UPCAST: tl.constexpr,
            IEEE: tl.constexpr, BLOCK_D: tl.constexpr):
    """The forward's probabilities for one tile, from the saved threshold and mass."""
    x = _x_tile(q, K, PAD, KEEP, b, hk, offs_m, offs_n, N, D, x_scale, HAS_PAD, HAS_KEEP, UPCAST, IEEE, BLOCK_D)
    pb = _pow_beta(tl.maximum(x - tau[:, None], 0.0), beta, MODE)
    return tl.where(mass[:, None] > 0, pb / tl.maximum(mass[:, None], 1e-30), 0.0)


@triton.jit
def attn_bwd_dq(Q, K, V, DO, DQ, TAU, MASS, DELTA, GA, ALPHA, PAD, KEEP, KV_NUM, KV_IDX,
                seed, p_drop, qk_scale, H, N, D, HK, n_qb, n_kb,
                MODE: tl.constexpr, HAS_PAD: tl.constexpr, HAS_KEEP: tl.constexpr, DROPOUT: tl.constexpr,
                UPCAST: tl.constexpr, IEEE: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    qb = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    hk = h % HK
    base = bh.to(tl.int64) * N * D
    offs_m = qb * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    io_mask = (offs_m[:, None] < N) & (offs_d[None, :] < D)
    q = tl.load(Q + base + offs_m[:, None] * D + offs_d[None, :], mask=io_mask, other=0.0)
    do = tl.load(DO + base + offs_m[:, None] * D + offs_d[None, :], mask=io_mask, other=0.0)
    row = bh.to(tl.int64) * N + offs_m
    tau = tl.load(TAU + row, mask=offs_m < N, other=0.0)
    mass = tl.load(MASS + row, mask=offs_m < N, other=0.0)
    if MODE == 0:
        alpha = 2.0
    elif MODE == 1:
        alpha = 1.5
    else:
        alpha = tl.load(ALPHA + h)
    beta = 1.0 / (alpha - 1.0)
    x_scale = qk_scale * (alpha - 1.0)
    if HAS_KEEP:
        n_blocks = tl.load(KV_NUM + hk * n_qb + qb)
    else:
        n_blocks = n_kb
    # pass A: delta = sum(s g) / sum(s) per row (and the alpha-gradient sums)
    sg = tl.zeros((BLOCK_M,), tl.float32)
    ss = tl.zeros((BLOCK_M,), tl.float32)
    pg = tl.zeros((BLOCK_M,), tl.float32)
    plg = tl.zeros((BLOCK_M,), tl.float32)
    ent = tl.zeros((BLOCK_M,), tl.float32)
    for i in range(0, n_blocks):
        if HAS_KEEP:
            kb = tl.load(KV_IDX + (hk * n_qb + qb) * n_kb + i)
        else:
            kb = i
        offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
        p = _p_tile(q, K + base, PAD, KEEP, b, hk, offs_m, offs_n, N, D, x_scale, tau, mass, beta,
                    MODE, HAS_PAD, HAS_KEEP, UPCAST, IEEE, BLOCK_D)
        v = tl.load(V + base + offs_n[:, None] * D + offs_d[None, :], mask=(offs_n[:, None] < N) & (offs_d[None, :] < D), other=0.0)
        g = _dot(do, tl.trans(v), UPCAST, IEEE)
        if DROPOUT:
            g = g * _dropout_scale(seed, bh, offs_m, offs_n, N, p_drop)
        s = _support_weight(p, alpha, MODE)
        sg += tl.sum(s * g, 1)
        ss += tl.sum(s, 1)
        if MODE == 2:
            plogp = tl.where(p > 0, p * tl.log(tl.maximum(p, 1e-30)), 0.0)
            pg += tl.sum(p * g, 1)
            plg += tl.sum(plogp * g, 1)
            ent += tl.sum(plogp, 1)
    delta = sg / tl.maximum(ss, 1e-30)
    tl.store(DELTA + row, delta, mask=offs_m < N)
    if MODE == 2:
        am1 = alpha - 1.0
        tl.store(GA + row, (pg - delta) / (am1 * am1) - (plg - delta * ent) / am1, mask=offs_m < N)
    # pass B: dq = sum_j s_j (g_j - delta) k_j * qk_scale
    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for i in range(0, n_blocks):
        if HAS_KEEP:
            kb = tl.load(KV_IDX + (hk * n_qb + qb) * n_kb + i)
        else:
            kb = i
        offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
        p = _p_tile(q, K + base, PAD, KEEP, b, hk, offs_m, offs_n, N, D, x_scale, tau, mass, beta,
                    MODE, HAS_PAD, HAS_KEEP, UPCAST, IEEE, BLOCK_D)
        kv_mask = (offs_n[:, None] < N) & (offs_d[None, :] < D)
        v = tl.load(V + base + offs_n[:, None] * D + offs_d[None, :], mask=kv_mask, other=0.0)
        k = tl.load(K + base + offs_n[:, None] * D + offs_d[None, :], mask=kv_mask, other=0.0)
        g = _dot(do, tl.trans(v), UPCAST, IEEE)
        if DROPOUT:
            g = g * _dropout_scale(seed, bh, offs_m, offs_n, N, p_drop)
        dz = _support_weight(p, alpha, MODE) * (g - delta[:, None])
        dq += _dot(dz.to(k.dtype), k, UPCAST, IEEE)
    tl.store(DQ + base + offs_m[:, None] * D + offs_d[None, :], (dq * qk_scale).to(DQ.dtype.element_ty), mask=io_mask)


@triton.jit
def attn_bwd_dkdv(Q, K, V, DO, DK, DV, TAU, MASS, DELTA, ALPHA, PAD, KEEP, Q_NUM, Q_IDX,
                  seed, p_drop, qk_scale, H, N, D, HK, n_qb, n_kb,
                  MODE: tl.constexpr, HAS_PAD: tl.constexpr, HAS_KEEP: tl.constexpr, DROPOUT: tl.constexpr,
                  UPCAST: tl.constexpr, IEEE: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    kb = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    hk = h % HK
    base = bh.to(tl.int64) * N * D
    offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    kv_mask = (offs_n[:, None] < N) & (offs_d[None, :] < D)
    v = tl.load(V + base + offs_n[:, None] * D + offs_d[None, :], mask=kv_mask, other=0.0)
    if MODE == 0:
        alpha = 2.0
    elif MODE == 1:
        alpha = 1.5
    else:
        alpha = tl.load(ALPHA + h)
    beta = 1.0 / (alpha - 1.0)
    x_scale = qk_scale * (alpha - 1.0)
    if HAS_KEEP:
        n_blocks = tl.load(Q_NUM + hk * n_kb + kb)
    else:
        n_blocks = n_qb
    dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    for i in range(0, n_blocks):
        if HAS_KEEP:
            qb = tl.load(Q_IDX + (hk * n_kb + kb) * n_qb + i)
        else:
            qb = i
        offs_m = qb * BLOCK_M + tl.arange(0, BLOCK_M)
        io_mask = (offs_m[:, None] < N) & (offs_d[None, :] < D)
        q = tl.load(Q + base + offs_m[:, None] * D + offs_d[None, :], mask=io_mask, other=0.0)
        do = tl.load(DO + base + offs_m[:, None] * D + offs_d[None, :], mask=io_mask, other=0.0)
        row = bh.to(tl.int64) * N + offs_m
        tau = tl.load(TAU + row, mask=offs_m < N, other=0.0)
        mass = tl.load(MASS + row, mask=offs_m < N, other=0.0)
        delta = tl.load(DELTA + row, mask=offs_m < N, other=0.0)
        p = _p_tile(q, K + base, PAD, KEEP, b, hk, offs_m, offs_n, N, D, x_scale, tau, mass, beta,
                    MODE, HAS_PAD, HAS_KEEP, UPCAST, IEEE, BLOCK_D)
        g = _dot(do, tl.trans(v), UPCAST, IEEE)
        pd = p
        if DROPOUT:
            r = _dropout_scale(seed, bh, offs_m, offs_n, N, p_drop)
            g = g * r
            pd = p * r
        dv += _dot(tl.trans(pd.to(do.dtype)), do, UPCAST, IEEE)
        dz = _support_weight(p, alpha, MODE) * (g - delta[:, None])
        dk += _dot(tl.trans(dz.to(q.dtype)), q, UPCAST, IEEE)
    tl.store(DK + base + offs_n[:, None] * D + offs_d[None, :], (dk * qk_scale).to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + base + offs_n[:, None] * D + offs_d[None, :], dv.to(DV.dtype.element_ty), mask=kv_mask)


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
