"""The autograd functions of the threshold normalisers (sparsemax, sparsegen-lin, entmax-1.5): the eager one runs
a solver over blocks of rows, the fused one the C++ kernels; both backward passes use the saved output alone."""

import torch

from ._common import compute_dtype, over_row_blocks
from .registry import SPARSEMAX_MODE


def family_input_grad(grad_out, s, dim):
    """s * (g - sum(s g) / sum(s)): the Jacobian-vector product of the whole entmax family.

    s = p ** (2 - alpha) on the support: sign(p) for sparsemax, sqrt(p) for entmax-1.5.
    """
    gs = grad_out.to(s.dtype) * s
    q = gs.sum(dim=dim, keepdim=True) / s.sum(dim=dim, keepdim=True).clamp(min=torch.finfo(s.dtype).tiny)
    return gs.sub_(q * s).to(grad_out.dtype)


class ThresholdFunction(torch.autograd.Function):
    """p = solve(x) over blocks of rows; backward from the saved p alone, with s = support_weights(p)."""

    @staticmethod
    def forward(ctx, x, dim, solve, support_weights):
        p = over_row_blocks(x, dim, solve)
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


class FusedThresholdFunction(torch.autograd.Function):
    """sparsemax(scale * x) (mode SPARSEMAX_MODE) or entmax-1.5 (ENTMAX15_MODE) by the C++ kernels."""

    @staticmethod
    def forward(ctx, x, dim, mode, scale):
        ops = torch.ops.fairseq_sparse
        z, shape = as_rows(x, dim)
        p = ops.sparsemax_forward(z, scale) if mode == SPARSEMAX_MODE else ops.entmax15_forward(z)
        ctx.dim, ctx.mode, ctx.scale, ctx.shape = dim, mode, scale, shape
        ctx.save_for_backward(p)
        return from_rows(p, shape, dim).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (p,) = ctx.saved_tensors
        g, _ = as_rows(grad_out.to(p.dtype), ctx.dim)
        gz, _ = torch.ops.fairseq_sparse.family_backward(p, g, ctx.mode, ctx.scale, None, False)
        return from_rows(gz, ctx.shape, ctx.dim).to(grad_out.dtype), None, None, None
