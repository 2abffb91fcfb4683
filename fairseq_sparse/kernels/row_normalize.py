"""sparsemax / sparsegen-lin / entmax-1.5 / alpha-entmax along the last dim in Triton, forward and backward.

One program per row holds the whole row and runs the threshold search of _triton_kernels/family.py to
its end inside the kernel: no host synchronisation. Computes in float32, returns the input dtype.
"""

import torch

from ..normalizers import check_alpha, check_lam, entmax_family
from ..normalizers.registry import ENTMAX_ALPHA_MODE, kernel_mode, resolve_n_iter
from ._runtime import MAX_GRID_X, can_run, kernels, next_pow2


class _RowNormalizeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, mode, scale, n_iter, tol):
        tk = kernels()
        rows = x.reshape(-1, x.shape[-1]).contiguous()
        n = rows.shape[-1]
        p = torch.empty(rows.shape, dtype=torch.float32, device=x.device)
        alpha_rows = _alpha_rows(alpha, x, rows.shape[0])
        if rows.shape[0] and n:
            tk.row_normalize_fwd[_row_grid(rows.shape[0])](
                rows, p, alpha_rows, n, scale, n_iter, tol, MODE=mode, BLOCK=next_pow2(n)
            )
        ctx.mode, ctx.scale, ctx.alpha_shape = mode, scale, None if alpha is None else alpha.shape
        ctx.save_for_backward(p, alpha_rows)
        return p.view(x.shape).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        tk = kernels()
        p, alpha_rows = ctx.saved_tensors
        g = grad.reshape(p.shape).contiguous()
        dz = torch.empty_like(p)
        ga = torch.empty(p.shape[0], dtype=torch.float32, device=p.device)
        if p.numel():
            tk.row_normalize_bwd[_row_grid(p.shape[0])](
                p, g, dz, alpha_rows, ga, p.shape[1], ctx.scale, MODE=ctx.mode, BLOCK=next_pow2(p.shape[1])
            )
        grad_alpha = None
        if ctx.needs_input_grad[1]:
            lead = grad.shape[:-1]
            grad_alpha = ga.view(*lead, 1).sum_to_size(ctx.alpha_shape)
        return dz.view(grad.shape).to(grad.dtype), grad_alpha, None, None, None, None


def _row_grid(rows):
    if rows > MAX_GRID_X:
        raise ValueError(f"kernels.normalize: {rows} rows, over CUDA's grid limit {MAX_GRID_X}; split the input")
    return (rows,)


def _alpha_rows(alpha, x, rows):
    """One float32 alpha per row (alpha broadcastable to x with size 1 in the last dim)."""
    if alpha is None:
        return torch.empty(1, dtype=torch.float32, device=x.device)
    a = alpha.detach().to(device=x.device, dtype=torch.float32)
    return a.expand(*x.shape[:-1], 1).reshape(rows).contiguous()


def normalize(x, normalizer, dim=-1, lam=0.0, alpha=1.5, n_iter=None, tol=1e-6):
    """normalizer(x) along `dim` on the GPU (or the Triton interpreter), differentiable.

    normalizer: sparsemax, sparsegen_lin (lam < 1), entmax15, entmax_bisect (alpha: float in
    (1, 2] or a tensor broadcastable to x with size 1 along `dim`, not checked here: that would
    wait for the device; differentiable; n_iter caps the Newton passes, default
    registry.DEFAULT_N_ITER). Agrees with fairseq_sparse.normalizers to float32 precision.
    """
    mode = kernel_mode(normalizer, "kernels.normalize")
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"kernels.normalize: expected a float16, bfloat16 or float32 tensor, got {x.dtype}")
    if not can_run(x):
        raise ValueError(
            f"kernels.normalize: needs triton and a CUDA tensor (CPU ones only under "
            f"kernels.interpret_on_cpu), got a {x.device.type} tensor"
        )
    lam = check_lam(lam, "kernels.normalize: lam")
    alpha_t = None
    if mode == ENTMAX_ALPHA_MODE:
        if isinstance(alpha, torch.Tensor):
            alpha_t = alpha.movedim(dim, -1) if alpha.dim() else alpha.view(*([1] * x.dim()))
        else:
            alpha_t = torch.full([1] * x.dim(), check_alpha(alpha, "kernels.normalize: alpha"), device=x.device)
        n_iter_cap = resolve_n_iter(n_iter)
    else:
        n_iter_cap = x.shape[dim] + 2  # exact search: bounded by the row length
    scale = entmax_family(normalizer, lam)[1]  # sparsegen-lin: sparsemax of x / (1 - lam)
    out = _RowNormalizeFunction.apply(x.movedim(dim, -1), alpha_t, mode, scale, n_iter_cap, tol)
    return out.movedim(-1, dim)
