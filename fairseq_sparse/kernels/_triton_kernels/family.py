"""The entmax family's threshold search and backward, shared by the row-wise and attention kernels.

One threshold search serves the whole family. With x = (alpha - 1) * z and beta = 1 / (alpha - 1),
p_j = max(x_j - tau, 0) ** beta and tau solves f(tau) = sum_j p_j - 1 = 0. f is convex and
decreasing, so Newton's method started at max(x) - 1 (left of the root) climbs to it without
overshooting. Every pass accumulates, per row, A = sum d ** beta, B = sum d ** (beta - 1) and the
support size K (d = max(x - tau, 0)); the Newton step is (A - 1) / (beta * B).
  MODE SPARSEMAX, sparsemax (beta = 1): the step is Michelot's exact support update; stop when K
          stops changing (tau is then exact). (The MODE ids are normalizers/registry.py's.)
  MODE ENTMAX15, entmax-1.5 (beta = 2): once K is unchanged between passes, jump to the closed-form
          root for that support, tau = mean_S x - sqrt(1 / K - var_S x); stop when A = 1 within tol
          or the update is a few ulps of tau.
  MODE ENTMAX_ALPHA, alpha-entmax (alpha per row or per head): Newton until A = 1 within tol, or
          the step is a few ulps of tau, or n_iter passes.
The output is d ** beta / A (A at the final tau), so rows always sum to 1. A row with no allowed
entry (max x = -inf) gives zeros and zero gradients.

Backward of the family from the output alone: with s = p ** (2 - alpha) on the support,
dz = s * (g - delta), delta = sum(s * g) / sum(s). For alpha-entmax the alpha gradient of a row is
(sum p g - delta) / (alpha - 1)^2 - (sum g p log p - delta * H) / (alpha - 1), H = sum p log p.
"""

import triton
import triton.language as tl

from ...normalizers import registry

NEG_INF = tl.constexpr(float("-inf"))
# the MODE ids, from the one normaliser registry (also the C++ kernels' `kind`)
SPARSEMAX = tl.constexpr(registry.SPARSEMAX_MODE)
ENTMAX15 = tl.constexpr(registry.ENTMAX15_MODE)
ENTMAX_ALPHA = tl.constexpr(registry.ENTMAX_ALPHA_MODE)


@triton.jit
def _alpha_of(ALPHA, i, MODE: tl.constexpr):
    """The entmax alpha: fixed by MODE for sparsemax (2) and entmax-1.5, else ALPHA[i] (row or head)."""
    if MODE == SPARSEMAX:
        alpha = 2.0
    elif MODE == ENTMAX15:
        alpha = 1.5
    else:
        alpha = tl.load(ALPHA + i)
    return alpha


@triton.jit
def _pow_beta(d, beta, MODE: tl.constexpr):
    """d ** beta for d >= 0."""
    if MODE == SPARSEMAX:
        r = d
    elif MODE == ENTMAX15:
        r = d * d
    else:
        r = tl.where(d > 0, tl.exp2(beta * tl.log2(tl.maximum(d, 1e-30))), 0.0)
    return r


@triton.jit
def _pow_beta_m1(d, beta, MODE: tl.constexpr):
    """d ** (beta - 1) on the support, 0 off it (0 ** 0 must not count)."""
    if MODE == SPARSEMAX:
        r = tl.where(d > 0, 1.0, 0.0)
    elif MODE == ENTMAX15:
        r = d
    else:
        r = tl.where(d > 0, tl.exp2((beta - 1.0) * tl.log2(tl.maximum(d, 1e-30))), 0.0)
    return r


@triton.jit
def _newton(tau, A, B, K, K_prev, beta, live, tol, MODE: tl.constexpr):
    """One update of the threshold from the pass statistics; returns (tau, pending)."""
    step = (A - 1.0) / (beta * tl.maximum(B, 1e-30))
    if MODE == SPARSEMAX:
        pending = live & (K != K_prev)
        new_tau = tau + step
    elif MODE == ENTMAX15:
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
def _support_weight(p, alpha, MODE: tl.constexpr):
    """s = p ** (2 - alpha) on the support."""
    if MODE == SPARSEMAX:
        r = tl.where(p > 0, 1.0, 0.0)
    elif MODE == ENTMAX15:
        r = tl.sqrt(p)
    else:
        r = tl.where(p > 0, tl.exp2((2.0 - alpha) * tl.log2(tl.maximum(p, 1e-30))), 0.0)
    return r


@triton.jit
def _plogp(p):
    """p log p, 0 off the support."""
    return tl.where(p > 0, p * tl.log(tl.maximum(p, 1e-30)), 0.0)


@triton.jit
def _alpha_grad(sum_pg, sum_plogp_g, entropy_sum, delta, alpha):
    """A row's alpha gradient from sum p g, sum g p log p, H = sum p log p and delta."""
    am1 = alpha - 1.0
    return (sum_pg - delta) / (am1 * am1) - (sum_plogp_g - delta * entropy_sum) / am1
