"""Fused sparse attention (scores, key padding, keep mask, entmax-family normaliser, dropout, values).

FlashAttention-style: the (N x N) probabilities are never stored. Each query block finds its
rows' thresholds by a few passes over the key blocks (row max, then Newton steps, see
_triton_kernels/family.py), then accumulates the values; the backward recomputes the probabilities from
the saved per-row threshold and mass. A keep mask is executed block-sparse: blocks of the mask
with no kept entry are skipped in every pass, forward and backward (see blocks.block_tables).
On a GPU the tile sizes are autotuned per power-of-two bucket of N (TUNE_CONFIGS); the launch grid
is one flat axis of blocks x batch x heads (_runtime.flat_grid), so B x H may pass 65,535.
"""

import functools
import math

import torch

from ..normalizers import check_alpha, check_lam, entmax_family
from ..normalizers.registry import ENTMAX_ALPHA_MODE, kernel_mode, resolve_n_iter
from ._runtime import can_run, flat_grid, kernels, next_pow2, small_tiles
from .blocks import cached_block_tables

# Tile sizes (BLOCK_M, BLOCK_N, warps, stages) the autotuner tries on a GPU, per power-of-two bucket of N.
# With a keep mask the tiles are those its block tables were built with (fixed_tiles); only warps and
# stages are tuned then. Under the interpreter the tiles are fixed (16 x 16, or fixed_tiles).
TUNE_CONFIGS = ((64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 8, 2), (64, 32, 4, 2), (32, 32, 4, 2))
TUNE_KEY = ("n_bucket", "D", "MODE", "HAS_PAD", "HAS_KEEP", "DROPOUT", "IEEE")  # n_bucket: next_pow2(N)


def fixed_tiles(d):
    """The tiles of a keep mask's block tables, and of every launch under the interpreter with GPU tiles."""
    return (64, 64) if d <= 64 else (32, 32)


def tune_configs(d, has_keep):
    """(BLOCK_M, BLOCK_N, warps, stages) the autotuner may pick for head dim d (see TUNE_CONFIGS)."""
    fixed = fixed_tiles(d)
    return [c for c in TUNE_CONFIGS if (c[:2] == fixed if has_keep else d <= 64 or max(c[:2]) <= 32)]


def _prune(configs, named_args, **kwargs):
    d, has_keep = named_args["D"], kwargs.get("HAS_KEEP", named_args.get("HAS_KEEP"))
    allowed = set(tune_configs(d, has_keep))
    return [c for c in configs if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) in allowed]


@functools.cache
def _tuned(name):
    """Kernel `name` autotuned over TUNE_CONFIGS (GPU only: the interpreter runs the plain kernels)."""
    import triton

    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=st) for m, n, w, st in TUNE_CONFIGS]
    tuner = triton.autotune(configs, key=list(TUNE_KEY), prune_configs_by={"early_config_prune": _prune})
    return tuner(getattr(kernels(), name))


class _Launcher:
    """Launches one attention kernel: autotuned tiles on a GPU, fixed ones under the interpreter."""

    def __init__(self, name, blocks_of, device, d):
        self.name, self.blocks_of = name, blocks_of  # blocks_of: "BLOCK_M" (query-block programs) or "BLOCK_N"
        self.small = small_tiles(device)
        self.fixed = (16, 16) if self.small else fixed_tiles(d)
        self.tuned = device.type == "cuda"

    def __call__(self, n, heads, *args, **flags):
        flags = dict(flags, UPCAST=self.small)  # the interpreter's half-precision dot is exact only upcast
        if self.tuned:
            fn = _tuned(self.name)
            fn[lambda meta: flat_grid(math.ceil(n / meta[self.blocks_of]), heads)](*args, **flags)
            return fn.best_config.kwargs["BLOCK_M"]
        bm, bn = self.fixed
        block = bm if self.blocks_of == "BLOCK_M" else bn
        getattr(kernels(), self.name)[flat_grid(math.ceil(n / block), heads)](*args, BLOCK_M=bm, BLOCK_N=bn, **flags)
        return bm


class _SparseAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, alpha, pad, keep, mode, qk_scale, dropout_p, n_iter, tol):
        B, H, N, D = q.shape
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        dev = q.device
        dummy_i = torch.zeros(1, dtype=torch.int32, device=dev)
        fwd = _Launcher("attn_fwd", "BLOCK_M", dev, D)
        if keep is not None:
            tables = cached_block_tables(keep, *fwd.fixed)
            keep_u8 = keep.contiguous().view(torch.uint8)
            hk = keep.shape[0]
        else:
            tables, keep_u8, hk = (dummy_i,) * 4, dummy_i, 1
        pad_u8 = pad.contiguous().view(torch.uint8) if pad is not None else dummy_i
        alpha_h = alpha.detach().float().contiguous() if alpha is not None else torch.ones(1, device=dev)
        seed = int(torch.randint(0, 2**30, (1,)).item()) if dropout_p > 0 else 0  # CPU generator: no device sync
        o = torch.empty_like(q)
        tau = torch.empty((B, H, N), dtype=torch.float32, device=dev)
        mass, support = torch.empty_like(tau), torch.empty_like(tau)
        passes = torch.empty(B * H * math.ceil(N / 16), dtype=torch.int32, device=dev)  # 16: the smallest BLOCK_M
        flags = dict(
            MODE=mode,
            HAS_PAD=pad is not None,
            HAS_KEEP=keep is not None,
            DROPOUT=dropout_p > 0,
            IEEE=q.dtype == torch.float32,
            BLOCK_D=max(16, next_pow2(D)),
        )
        sizes = (H, N, D, hk, next_pow2(N))
        bm = fwd(
            N,
            B * H,
            q,
            k,
            v,
            o,
            tau,
            mass,
            support,
            passes,
            alpha_h,
            pad_u8,
            keep_u8,
            tables[0],
            tables[1],
            seed,
            float(dropout_p),
            qk_scale,
            n_iter,
            tol,
            *sizes,
            **flags,
        )
        passes = passes[: B * H * math.ceil(N / bm)].view(B, H, -1)
        ctx.save_for_backward(q, k, v, tau, mass, alpha_h, pad_u8, keep_u8, *tables)
        ctx.meta = (seed, float(dropout_p), qk_scale, sizes, flags, ctx.needs_input_grad[3])
        ctx.mark_non_differentiable(support, passes)
        return o, support, passes

    @staticmethod
    def backward(ctx, do, _support_grad, _passes_grad):
        q, k, v, tau, mass, alpha_h, pad_u8, keep_u8, kv_num, kv_idx, q_num, q_idx = ctx.saved_tensors
        seed, p_drop, qk_scale, sizes, flags, alpha_grad = ctx.meta
        B, H, N, D = q.shape
        do = do.contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        delta = torch.empty_like(tau)
        ga = torch.empty_like(tau) if flags["MODE"] == ENTMAX_ALPHA_MODE else delta
        _Launcher("attn_bwd_dq", "BLOCK_M", q.device, D)(
            N,
            B * H,
            q,
            k,
            v,
            do,
            dq,
            tau,
            mass,
            delta,
            ga,
            alpha_h,
            pad_u8,
            keep_u8,
            kv_num,
            kv_idx,
            seed,
            p_drop,
            qk_scale,
            *sizes,
            **flags,
        )
        _Launcher("attn_bwd_dkdv", "BLOCK_N", q.device, D)(
            N,
            B * H,
            q,
            k,
            v,
            do,
            dk,
            dv,
            tau,
            mass,
            delta,
            alpha_h,
            pad_u8,
            keep_u8,
            q_num,
            q_idx,
            seed,
            p_drop,
            qk_scale,
            *sizes,
            **flags,
        )
        grad_alpha = ga.sum(dim=(0, 2)) if alpha_grad else None
        return dq, dk, dv, grad_alpha, None, None, None, None, None, None, None


def sparse_attention(
    q,
    k,
    v,
    normalizer,
    scale=None,
    lam=0.0,
    alpha=1.5,
    key_padding_mask=None,
    keep=None,
    dropout_p=0.0,
    n_iter=None,
    tol=1e-6,
    return_stats=False,
):
    """normalizer(scale * q k^T, masked) @ v in one fused kernel, forward and backward.

    q, k, v: (B, H, N, D) float16 / bfloat16 / float32 on CUDA (or CPU under TRITON_INTERPRET=1).
    normalizer: sparsemax, sparsegen_lin (lam), entmax15, entmax_bisect (alpha: float or a (H,)
    tensor, e.g. learned per head; it gets a gradient). key_padding_mask: (B, N) bool, True = pad.
    keep: bool (H or 1, N, N), True = may attend; its empty blocks are skipped. dropout_p: dropout
    on the probabilities (inverted scaling, as nn.Dropout). A row with no allowed key gives zeros.
    return_stats: also return {"support": non-zero probabilities per row (B, H, N) float32,
    "passes": threshold passes over the keys per query block (B, H, blocks) int32}.
    """
    mode = kernel_mode(normalizer, "sparse_attention")
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            f"sparse_attention: q, k, v must share one (B, H, N, D) shape, got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(
            f"sparse_attention: expected float16/bfloat16/float32 q, k, v of one dtype, got "
            f"{q.dtype}, {k.dtype}, {v.dtype}"
        )
    if not can_run(q):
        raise ValueError(
            f"sparse_attention: needs triton and CUDA tensors (CPU ones only under "
            f"kernels.interpret_on_cpu), got a {q.device.type} tensor"
        )
    lam = check_lam(lam, "sparse_attention: lam")
    if not 0.0 <= float(dropout_p) < 1.0:
        raise ValueError(f"sparse_attention: dropout_p must be in [0, 1), got {dropout_p}")
    B, H, N, D = q.shape
    scale = D**-0.5 if scale is None else float(scale)
    qk_scale = scale * entmax_family(normalizer, lam)[1]  # sparsegen-lin: sparsemax of scores / (1 - lam)
    alpha_h = None
    if mode == ENTMAX_ALPHA_MODE:
        if isinstance(alpha, torch.Tensor):
            alpha_h = alpha.reshape(-1).to(device=q.device, dtype=torch.float32)
            if alpha_h.numel() == 1:
                alpha_h = alpha_h.expand(H)
            if alpha_h.numel() != H:
                raise ValueError(
                    f"sparse_attention: alpha must have one value per head ({H}), got shape {tuple(alpha.shape)}"
                )
        else:
            alpha_h = torch.full((H,), check_alpha(alpha, "sparse_attention: alpha"), device=q.device)
    pad = None
    if key_padding_mask is not None:
        pad = key_padding_mask.to(device=q.device, dtype=torch.bool)
        if pad.shape != (B, N):
            raise ValueError(f"sparse_attention: key_padding_mask must be (B, N) = {(B, N)}, got {tuple(pad.shape)}")
    if keep is not None:
        if keep.dtype != torch.bool:
            raise ValueError(f"sparse_attention: keep must be a bool mask, got {keep.dtype}")
        keep = keep.to(q.device)
        if keep.dim() == 2:
            keep = keep[None]
        if keep.dim() == 4 and keep.shape[0] == 1:
            keep = keep[0]
        if keep.dim() != 3 or keep.shape[0] not in (1, H) or keep.shape[1:] != (N, N):
            raise ValueError(
                f"sparse_attention: keep must be (N, N), (1 or H, N, N) or (1, 1 or H, N, N) with "
                f"N = {N}, H = {H}; got {tuple(keep.shape)}"
            )
    n_iter = resolve_n_iter(n_iter) if mode == ENTMAX_ALPHA_MODE else N + 2
    out, support, passes = _SparseAttention.apply(
        q, k, v, alpha_h, pad, keep, mode, qk_scale, float(dropout_p), n_iter, float(tol)
    )
    return (out, {"support": support, "passes": passes}) if return_stats else out


def dropout_factors(batch, heads, n, seed, p, device):
    """The (batch, heads, n, n) dropout factors sparse_attention uses for a seed (for tests)."""
    out = torch.empty((batch, heads, n, n), dtype=torch.float32, device=device)
    block = 16
    kernels().dropout_scale_dense[(math.ceil(n / block), batch * heads)](out, seed, float(p), heads, n, BLOCK=block)
    return out
