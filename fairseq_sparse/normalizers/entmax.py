"""entmax-1.5 and alpha-entmax (Peters et al., 2019; Correia et al., 2019).

alpha-entmax(z)_j = max((alpha - 1) z_j - tau, 0) ** (1 / (alpha - 1)), tau making the row
sum to 1. f(tau) = sum_j max(x_j - tau, 0) ** beta - 1 (x = (alpha - 1) z, beta = 1 /
(alpha - 1) >= 1) is convex and decreasing, so Newton's method started left of the root at
max(x) - 1 climbs to it monotonically, never overshooting. For alpha = 1.5 the root has a
closed form once the support is known, so that search ends exact.

Backward passes are O(n) per row from the saved output: with s = p ** (2 - alpha) on the
support, dz = s * (g - sum(s * g) / sum(s)).

On CPU tensors the fused C++ kernels (fairseq_sparse/csrc) run the same searches row by row
(the entmax-1.5 and alpha-entmax Newton steps on ||(x - tau)_+||_beta - 1, which is also convex
and converges in fewer steps on dense rows); the code below is the fallback (see backend.py).
"""

import torch

from ._common import check_alpha, check_input, compute_dtype, over_row_blocks, row_start, shifted_relu, support_size
from .autograd import FusedThresholdFunction, ThresholdFunction, as_rows, family_input_grad, from_rows
from .backend import fused_ops
from .registry import ENTMAX15_MODE, ENTMAX_ALPHA_MODE, resolve_n_iter


def _tolerance(dtype):
    return 1e-12 if dtype == torch.float64 else 1e-6


def _entmax15_stats(d, scratch):
    return (
        d.sum(dim=-1, keepdim=True),
        torch.linalg.vector_norm(d, ord=2, dim=-1, keepdim=True).square_(),
        support_size(d, scratch),
    )


def _solve_entmax15(z, out, scratch):
    """out = max(z - t, 0) ** 2 / 4 with sum_j max(z_j - t, 0) ** 2 = 4 (z's own units).

    Given the support S (k entries), t = mean_S(z) - sqrt(4 / k - var_S(z)); Newton steps
    from the left find S, and a closed-form candidate is accepted once its support is S.
    """
    t = row_start(z, 2.0)
    live = torch.isfinite(t)
    tiny = torch.finfo(z.dtype).tiny
    d = shifted_relu(z, t, out)
    s1, s2, k = _entmax15_stats(d, scratch)
    prev_k = None
    for _ in range(z.shape[-1] + 2):
        if prev_k is not None and torch.equal(k, prev_k):
            kk = k.clamp(min=1)
            shift = s1 / kk
            var = (s2 / kk - shift.square()).clamp_(min=0)
            t_exact = t + shift - (4.0 / kk - var).clamp_(min=0).sqrt_()
            t_exact = torch.where(live, t_exact, t)
            d = shifted_relu(z, t_exact, out)
            s1c, s2c, kc = _entmax15_stats(d, scratch)
            # the support is confirmed, or an entry within rounding of t flips in and out of
            # it: then the constraint already holds to float precision and that entry is ~0
            exact = (kc == k) | ((s2c - 4.0).abs() <= 4.0 * _tolerance(z.dtype))
            if exact.all():
                d.square_().mul_(0.25)
                return
            t = torch.where(exact, t_exact, t)
            d = shifted_relu(z, t, out)
            s1, s2, k = _entmax15_stats(d, scratch)
        prev_k = k
        step = (s2 - 4.0) / (2.0 * s1).clamp(min=tiny)
        t = torch.where(live, t + step, t)
        d = shifted_relu(z, t, out)
        s1, s2, k = _entmax15_stats(d, scratch)
    d.square_().mul_(0.25)


def entmax15(x, dim=-1):
    """1.5-entmax: sparser than softmax, smoother than sparsemax. -inf entries get 0."""
    check_input(x, "entmax15")
    if fused_ops(x) is not None:
        return FusedThresholdFunction.apply(x, dim, ENTMAX15_MODE, 1.0)
    return ThresholdFunction.apply(x, dim, _solve_entmax15, torch.sqrt)


def _solve_alpha(z, out, scratch, alpha, n_iter):
    """out = alpha-entmax(z) for one block of rows; alpha has shape (rows, 1)."""
    x = z * (alpha - 1)
    beta = 1.0 / (alpha - 1)
    tau = row_start(x, 1.0)
    live = torch.isfinite(tau)
    tol = _tolerance(z.dtype)
    tiny, eps = torch.finfo(z.dtype).tiny, torch.finfo(z.dtype).eps
    d = shifted_relu(x, tau, out)
    for _ in range(n_iter):
        # d ** (beta - 1) on the support only: 0 ** 0 would count entries off it (beta = 1).
        d_pow = torch.pow(d, beta - 1, out=scratch).mul_(torch.sign(d))
        mass = torch.linalg.vecdot(d_pow, d).unsqueeze(-1)
        excess = mass - 1
        step = excess / (beta * d_pow.sum(dim=-1, keepdim=True)).clamp(min=tiny)
        # done: the row sums to 1 within tol, or the step is a few ulps of tau (as exact as
        # the float type gets at tau's magnitude; the renormalisation below absorbs the rest)
        pending = (excess.abs() > tol) & live & (step.abs() > 4 * eps * (tau.abs() + 1))
        if not pending.any():
            break
        tau = torch.where(pending, tau + step, tau)
        d = shifted_relu(x, tau, out)
    p = d.pow_(beta)
    p.div_(p.sum(dim=-1, keepdim=True).clamp_(min=tiny))


class EntmaxAlphaFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, alpha, dim, n_iter):
        cdtype = compute_dtype(z)
        alpha_c = alpha.to(cdtype)
        alpha_rows = alpha_c.expand_as(z.select(dim, 0).unsqueeze(dim)).movedim(dim, -1).reshape(-1, 1)
        p = over_row_blocks(z, dim, _solve_alpha, alpha_rows, n_iter)
        ctx.dim = dim
        ctx.alpha_shape = alpha.shape
        ctx.save_for_backward(p, alpha_c)
        return p.to(z.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        p, alpha = ctx.saved_tensors
        dim = ctx.dim
        tiny = torch.finfo(p.dtype).tiny
        s = torch.where(p > 0, p.pow(2 - alpha), torch.zeros_like(p))
        grad_z = family_input_grad(grad_out, s, dim) if ctx.needs_input_grad[0] else None
        grad_alpha = None
        if ctx.needs_input_grad[1]:
            # dp/dalpha = (p - s_hat) / (alpha-1)^2 - (p log p - s_hat * H) / (alpha-1), with
            # s_hat = s / sum(s), H = sum(p log p): differentiate the stationarity condition.
            g = grad_out.to(p.dtype)
            p_log_p = torch.where(p > 0, p * p.clamp(min=tiny).log(), torch.zeros_like(p))
            entropy_term = p_log_p.sum(dim=dim, keepdim=True)
            s_hat = s / s.sum(dim=dim, keepdim=True).clamp(min=tiny)
            am1 = alpha - 1
            dp_dalpha = (p - s_hat) / am1.square() - (p_log_p - s_hat * entropy_term) / am1
            grad_alpha = (g * dp_dalpha).sum(dim=dim, keepdim=True)
            grad_alpha = grad_alpha.sum_to_size(ctx.alpha_shape) if len(ctx.alpha_shape) else grad_alpha.sum()
        return grad_z, grad_alpha, None, None


def _alpha_rows(alpha, z, dim):
    """alpha (broadcastable to z, size 1 along dim) as one value per row of as_rows(z, dim)."""
    return alpha.expand_as(z.select(dim, 0).unsqueeze(dim)).movedim(dim, -1).reshape(-1)


class FusedEntmaxAlphaFunction(torch.autograd.Function):
    """alpha-entmax by the C++ kernels: the forward and both gradients in one op each."""

    @staticmethod
    def forward(ctx, z, alpha, dim, n_iter):
        rows, shape = as_rows(z, dim)
        alpha_rows = _alpha_rows(alpha.to(rows.dtype), z, dim).contiguous()
        p = torch.ops.fairseq_sparse.entmax_alpha_forward(rows, alpha_rows, n_iter)
        ctx.dim, ctx.shape, ctx.alpha_shape = dim, shape, alpha.shape
        ctx.save_for_backward(p, alpha_rows)
        return from_rows(p, shape, dim).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        p, alpha_rows = ctx.saved_tensors
        g, _ = as_rows(grad_out.to(p.dtype), ctx.dim)
        want_alpha = ctx.needs_input_grad[1]
        gz, ga = torch.ops.fairseq_sparse.family_backward(p, g, ENTMAX_ALPHA_MODE, 1.0, alpha_rows, want_alpha)
        grad_z = from_rows(gz, ctx.shape, ctx.dim).to(grad_out.dtype) if ctx.needs_input_grad[0] else None
        grad_alpha = None
        if want_alpha:
            grad_alpha = from_rows(ga.unsqueeze(-1), ctx.shape[:-1] + (1,), ctx.dim)
            grad_alpha = grad_alpha.sum_to_size(ctx.alpha_shape) if len(ctx.alpha_shape) else grad_alpha.sum()
        return grad_z, grad_alpha, None, None


def entmax_bisect(x, alpha=1.5, dim=-1, n_iter=None):
    """alpha-entmax for any alpha in (1, 2]; alpha may be a tensor (e.g. learned per head).

    alpha: a float, or a tensor broadcastable to x with size 1 along `dim`; differentiable.
    n_iter: cap on threshold iterations (default registry.DEFAULT_N_ITER; the search stops at fp tolerance, then
    rows are renormalised). The threshold lies in the bracket [max(x) - 1, max(x)] and is
    reached by monotone Newton steps from its left end.
    """
    check_input(x, "entmax_bisect")
    n_iter = resolve_n_iter(n_iter)
    if not isinstance(alpha, torch.Tensor):
        alpha = torch.tensor(check_alpha(alpha, "entmax_bisect: alpha"), dtype=compute_dtype(x), device=x.device)
    else:
        if not alpha.is_floating_point():
            raise ValueError(f"entmax_bisect: alpha must be a floating tensor, got {alpha.dtype}")
        if alpha.dim() > 0 and (alpha.dim() != x.dim() or alpha.shape[dim] != 1):
            raise ValueError(
                f"entmax_bisect: alpha of shape {tuple(alpha.shape)} must have {x.dim()} dims with "
                f"size 1 along dim {dim} (x has shape {tuple(x.shape)})"
            )
        with torch.no_grad():
            lo, hi = float(alpha.min()), float(alpha.max())
        if not (lo > 1.0 and hi <= 2.0):
            raise ValueError(f"entmax_bisect: alpha must be in (1, 2], got values in [{lo}, {hi}]")
    if fused_ops(x) is not None:
        return FusedEntmaxAlphaFunction.apply(x, alpha, dim, n_iter)
    return EntmaxAlphaFunction.apply(x, alpha, dim, n_iter)
