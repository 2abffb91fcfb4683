"""What every normaliser shares: validation, the dtype policy and the eager solvers' row-block driver.

Thresholds are found in float32 (float64 when given float64): half-precision rows miss the
simplex by up to 5e-2 otherwise; results go back in the caller's dtype. The eager code (used
where backend.py does not pick the C++ kernels) runs iterative threshold searches over one
cache-sized block of rows at a time, which keeps the working set in cache and the forward peak
near the output's own size. The backend switch is backend.py, the autograd functions autograd.py.
"""

import torch

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_BLOCK_ELEMENTS = 1 << 18


def check_input(x, name):
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name}: expected a floating tensor (float16, bfloat16, float32, float64), got {x.dtype}")


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


def over_row_blocks(x, dim, solve, *args):
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
