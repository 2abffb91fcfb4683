"""Shared plumbing for the normalisers: dtype policy, validation, backend choice, drivers.

Thresholds are found in float32 (float64 when given float64): half-precision rows miss the
simplex by up to 5e-2 otherwise; results go back in the caller's dtype.

Two backends compute the same thing. On CPU tensors the fused C++ kernels of
fairseq_sparse/csrc (torch.ops.fairseq_sparse, built by `pip install --no-build-isolation -e .`)
run each row's whole threshold search in one parallel op. Elsewhere (CUDA tensors, the
extension not built, FAIRSEQ_SPARSE_EAGER=1 or inside `eager_backend()`) the eager PyTorch
code below runs: iterative threshold searches over one cache-sized block of rows at a time,
which keeps the working set in cache and the forward peak near the output's own size.
"""
import contextlib
import functools
import importlib
import logging
import os

import torch

logger = logging.getLogger(__name__)
_FORCE_EAGER = [os.environ.get("FAIRSEQ_SPARSE_EAGER", "") == "1"]


@functools.lru_cache(maxsize=None)
def _fused_ops():
    """torch.ops.fairseq_sparse if the C++ extension loads, else None (logged once)."""
    try:
        importlib.import_module("fairseq_sparse._C")  # registers the ops
    except ImportError as e:
        logger.warning(
            "fairseq_sparse: fused CPU normalisers not available (%s); using the eager PyTorch ones "
            "(`pip install --no-build-isolation -e .` builds them)", e
        )
        return None
    return torch.ops.fairseq_sparse


def fused_ops(x):
    """The fused ops if they can run on x (a non-empty CPU tensor), else None."""
    if _FORCE_EAGER[0] or x.device.type != "cpu" or x.numel() == 0:
        return None
    return _fused_ops()


def backend():
    """'fused' when CPU inputs go to the C++ kernels, else 'eager'."""
    return "eager" if _FORCE_EAGER[0] or _fused_ops() is None else "fused"


@contextlib.contextmanager
def eager_backend():
    """Run the normalisers on the eager PyTorch path inside this block (tests, comparisons)."""
    previous = _FORCE_EAGER[0]
    _FORCE_EAGER[0] = True
    try:
        yield
    finally:
        _FORCE_EAGER[0] = previous

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_BLOCK_ELEMENTS = 1 << 18


def check_input(x, name):
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"{name}: expected a floating tensor (float16, bfloat16, float32, float64), got {x.dtype}"
        )


def check_lam(lam, name):
    """sparsegen-lin's lambda as a float; it must be < 1 (sparsemax(z / (1 - lambda)))."""
    lam = float(lam)
    if not lam < 1.0:
        raise ValueError(f"{name} must be < 1 (sparsemax(z / (1 - lambda))), got {lam}")
    return lam


def check_alpha(alpha, name):
    """A fixed alpha-entmax alpha as a float; it must be in (1, 2] (1 is softmax's limit, 2 sparsemax)."""
    alpha = float(alpha)
    if not 1.0 < alpha <= 2.0:
        raise ValueError(f"{name} must be in (1, 2], got {alpha}")
    return alpha


def compute_dtype(x):
    """float64 stays float64 (gradcheck); everything else is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def row_start(z, width):
    """Left end of the threshold search: max(z) - width, +inf for a fully masked (-inf) row.

    Every entry below max - width gets probability 0, so the threshold is never below this
    point; +inf makes a fully masked row come out as exact zeros instead of NaN.
    """
    m = z.amax(dim=-1, keepdim=True)
    return torch.where(torch.isneginf(m), torch.full_like(m, float("inf")), m - width)


def shifted_relu(z, tau, out):
    """max(z - tau, 0), written into `out`."""
    return torch.sub(z, tau, out=out).clamp_(min=0)


def support_size(d, scratch):
    """Number of positive entries per row of d >= 0, as a float (sign is 0/1 there).

    Summing a float 0/1 tensor is several times faster than summing a bool one on the CPU.
    """
    return torch.sign(d, out=scratch).sum(dim=-1, keepdim=True)


def rowwise(x, dim, solve, *args):
    """Apply solve(z_rows, out_rows, scratch, *args) over blocks of rows of x along `dim`.

    z is x in the compute dtype, moved so `dim` is last and flattened to (rows, n). Returns
    the output in the compute dtype, shaped like x. args that are tensors with one entry per
    row (shape (rows, 1)) are sliced with the block.
    """
    z = x.to(compute_dtype(x)).movedim(dim, -1)
    shape = z.shape
    n = shape[-1]
    z = z.reshape(-1, n)
    out = torch.empty_like(z)
    rows = z.shape[0]
    if rows == 0 or n == 0:
        return out.reshape(shape).movedim(-1, dim)
    block = rows if z.is_cuda else max(1, min(rows, _BLOCK_ELEMENTS // max(n, 1)))
    scratch = torch.empty((block, n), dtype=z.dtype, device=z.device)
    for s in range(0, rows, block):
        e = min(rows, s + block)
        sliced = [a[s:e] if isinstance(a, torch.Tensor) and a.dim() == 2 else a for a in args]
        solve(z[s:e], out[s:e], scratch[: e - s], *sliced)
    return out.reshape(shape).movedim(-1, dim)


def family_input_grad(grad_out, s, dim):
    """s * (g - sum(s g) / sum(s)): the Jacobian-vector product of the whole entmax family.

    s = p ** (2 - alpha) on the support: sign(p) for sparsemax, sqrt(p) for entmax-1.5.
    """
    gs = grad_out.to(s.dtype) * s
    q = gs.sum(dim=dim, keepdim=True) / s.sum(dim=dim, keepdim=True).clamp(min=torch.finfo(s.dtype).tiny)
    return gs.sub_(q * s).to(grad_out.dtype)


class ThresholdFunction(torch.autograd.Function):
    """p = solve(x) row by row; backward from the saved p alone, with s = support_weights(p)."""

    @staticmethod
    def forward(ctx, x, dim, solve, support_weights):
        p = rowwise(x, dim, solve)
        ctx.dim, ctx.support_weights = dim, support_weights
        ctx.save_for_backward(p)
        return p.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (p,) = ctx.saved_tensors
        return family_input_grad(grad_out, ctx.support_weights(p), ctx.dim), None, None, None


def as_rows(x, dim):
    """x in the compute dtype with `dim` last, as a contiguous (rows, n) tensor, and its shape."""
    z = x.to(compute_dtype(x)).movedim(dim, -1)
    return z.reshape(-1, z.shape[-1]).contiguous(), z.shape


def from_rows(rows, shape, dim):
    return rows.reshape(shape).movedim(-1, dim)


SPARSEMAX, ENTMAX15, ENTMAX_ALPHA = 0, 1, 2  # `kind` of torch.ops.fairseq_sparse.family_backward


class FusedThresholdFunction(torch.autograd.Function):
    """sparsemax(scale * x) (kind SPARSEMAX) or entmax-1.5 (kind ENTMAX15) by the C++ kernels."""

    @staticmethod
    def forward(ctx, x, dim, kind, scale):
        ops = torch.ops.fairseq_sparse
        z, shape = as_rows(x, dim)
        p = ops.sparsemax_forward(z, scale) if kind == SPARSEMAX else ops.entmax15_forward(z)
        ctx.dim, ctx.kind, ctx.scale, ctx.shape = dim, kind, scale, shape
        ctx.save_for_backward(p)
        return from_rows(p, shape, dim).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (p,) = ctx.saved_tensors
        g, _ = as_rows(grad_out.to(p.dtype), ctx.dim)
        gz, _ = torch.ops.fairseq_sparse.family_backward(p, g, ctx.kind, ctx.scale, None, False)
        return from_rows(gz, ctx.shape, ctx.dim).to(grad_out.dtype), None, None, None
