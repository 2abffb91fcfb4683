"""Masked attention probabilities whose gradient also reaches the mask (for learned masks).

SparseBERT writes masked attention as A_ij = M_ij exp(e_ij) / sum_l M_il exp(e_il). With a
0/1 mask the value is the softmax over the kept keys, but the product form also gives a
gradient to every mask entry, dropped ones included:

    dL/dM_ij = w_ij (g_ij - sum_l A_il g_il),    w_ij = exp(e_ij) / sum_l M_il exp(e_il)

(g = dL/dA), i.e. w_ij is the weight key j would get if it were switched on. The same
construction extends to the whole entmax family: alpha-entmax with weights M,
p_j = M_j [(alpha - 1) z_j - tau]_+ ** (1 / (alpha - 1)), sum_j p_j = 1, has by implicit
differentiation

    dL/dM_j = w_j (g_j - sum_l c_l g_l),   w_j = [(alpha - 1) z_j - tau]_+ ** (1 / (alpha - 1)),
    c = p ** (2 - alpha) / sum(p ** (2 - alpha))

(sparsemax: alpha = 2, c uniform over the support; softmax is the alpha -> 1 limit). So the
forward pass is exactly the normaliser over the kept keys - the fast, tested code - and the
mask gradient is computed from its output. A dropped key gets a gradient only if it would
fall inside the support, the sparse analogue of exp(e_ij) above.

One change to the exact derivative: w is capped at 1. For a kept key w = p <= 1 anyway; a
dropped key whose score towers over the kept ones would otherwise get w = exp(e_j - lse), up
to e**80 in float32. Such spikes swamp Adam's second-moment estimate and freeze the logit for
the rest of the run (seen in the synthetic search of tests/test_dam.py). Capped, the mask
gradient says at most "this key would take the whole row".

with_mask_gradient adds that gradient to probabilities computed elsewhere (the attention module's
GPU path normalises with the Triton row kernel); nothing here waits for the device.

A row whose every key is dropped attends to nothing (probabilities 0). Its mask gradient is
taken as if the row's best key alone were kept (w = exp(e - max e) for softmax,
[x - (max x - 1)]_+ ** beta otherwise), so a learned mask can switch a key back on.
"""

import torch

from ..normalizers import entmax_family, get_normalizer, normalizer_params


def would_be_weights(probs, scores, alpha, scale=1.0):
    """(w, c): the weight each key would get if switched on, and the normaliser's row weights c.

    probs: the normaliser's output over the kept keys (which it also identifies: the kept keys
    are those it was given); scores: raw scores, -inf for keys that do not exist (padding).
    Both (..., S); float32 or float64.
    """
    if not isinstance(alpha, torch.Tensor) and alpha == 1.0:
        # exp(e_j - lse) = p_k exp(e_j - e_k) for the most probable kept key k: no extra logsumexp
        p_max, k = probs.max(dim=-1, keepdim=True)
        anchor = scores.gather(-1, k)
        # no kept key: as if the row's best key alone were kept (no data-dependent branch: no host sync on a GPU)
        empty = p_max == 0
        anchor = torch.where(empty, scores.amax(dim=-1, keepdim=True), anchor)
        p_max = torch.where(empty, torch.ones_like(p_max), p_max)
        anchor = torch.where(torch.isfinite(anchor), anchor, torch.zeros_like(anchor))  # no key at all: w = 0
        return (scores - anchor).exp_().mul_(p_max).clamp_(max=1.0), probs
    row_max = scores.amax(dim=-1, keepdim=True)
    am1 = alpha - 1.0
    x = scores * (scale * am1)
    support = probs > 0
    size = support.sum(dim=-1, keepdim=True)
    # on the support p = (x - tau) ** (1 / (alpha - 1)), so tau = x - p ** (alpha - 1) there
    tau = torch.where(support, x - probs.pow(am1), torch.zeros_like(x)).sum(dim=-1, keepdim=True) / size.clamp(min=1)
    tau = torch.where(size > 0, tau, row_max * (scale * am1) - 1.0)
    tau = torch.where(torch.isfinite(tau), tau, torch.full_like(tau, float("inf")))  # no key at all: w = 0
    w = (x - tau).clamp_(min=0.0).pow_(1.0 / am1).clamp_(max=1.0)
    c = probs.pow(2.0 - alpha).mul_(support)
    c = c / c.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(c.dtype).tiny)
    return w, c


class _MaskGradient(torch.autograd.Function):
    """Identity on the probabilities; adds the mask gradient w * (g - sum(c * g))."""

    @staticmethod
    def forward(ctx, probs, scores, mask, alpha, scale):
        ctx.alpha, ctx.scale = alpha, scale
        ctx.mask_shape, ctx.mask_dtype = mask.shape, mask.dtype
        alpha_t = alpha if isinstance(alpha, torch.Tensor) else None
        ctx.save_for_backward(probs, scores, alpha_t)
        return probs.view_as(probs)

    @staticmethod
    def backward(ctx, grad):
        probs, scores, alpha_t = ctx.saved_tensors
        alpha = ctx.alpha
        dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
        alpha = alpha if alpha_t is None else alpha_t.to(dtype)
        w, c = would_be_weights(probs.to(dtype), scores.to(dtype), alpha, ctx.scale)
        g = grad.to(dtype)
        grad_mask = w.mul_(g - torch.linalg.vecdot(c, g, dim=-1).unsqueeze(-1))
        grad_mask = grad_mask.sum_to_size(ctx.mask_shape).to(ctx.mask_dtype)
        return grad, None, grad_mask, None, None


def masked_normalize(scores, mask, normalizer="softmax", key_padding_mask=None, lam=0.0, alpha=1.5, n_iter=None):
    """Attention probabilities over the keys kept by `mask`, differentiable in a float mask.

    scores: (B, H, T, S). mask: bool keep mask, or a 0/1 float mask (e.g. a straight-through
    DAM sample) of shape (T, S), (H or 1, T, S) or (B, H or 1, T, S); float entries > 0.5 are
    kept. key_padding_mask: (B, S), True = pad (scores already -inf there are treated as pads
    too). normalizer: softmax, sparsemax, sparsegen_lin (lam), entmax15, entmax_bisect (alpha:
    float or tensor broadcastable to (B, H, T, 1); n_iter). Returns (B, H, T, S) in the
    scores' dtype; a dropped or padded key gets exactly 0.
    """
    if scores.dim() != 4:
        raise ValueError(f"scores must be (batch, heads, tgt, src), got shape {tuple(scores.shape)}")
    family_alpha, scale = entmax_family(normalizer, lam, alpha)
    if mask.dtype == torch.bool:
        keep = mask
    else:
        keep = mask.detach() > 0.5
    if keep.dim() > 4 or keep.shape[-2:] != scores.shape[-2:]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit scores of shape {tuple(scores.shape)}")
    if key_padding_mask is not None:
        pad = key_padding_mask.to(torch.bool)
        if pad.shape != (scores.shape[0], scores.shape[-1]):
            raise ValueError(
                f"key_padding_mask of shape {tuple(pad.shape)} does not match scores {tuple(scores.shape)}"
            )
        scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    normalize = get_normalizer(normalizer, **normalizer_params(normalizer, lam, alpha, n_iter))
    probs = normalize(scores.masked_fill(~keep, float("-inf")), dim=-1)
    return with_mask_gradient(probs, scores, mask, normalizer, lam, alpha)


def with_mask_gradient(probs, scores, mask, normalizer="softmax", lam=0.0, alpha=1.5):
    """probs (the normaliser over the keys `mask` keeps), now also differentiable in a float `mask`.

    For callers that normalise themselves (the attention module's GPU kernels): scores are the
    raw scores, -inf only where keys do not exist (padding). A bool mask, or one that needs no
    gradient, returns probs unchanged. Nothing here waits for the device.
    """
    if mask.dtype == torch.bool or not (mask.requires_grad and torch.is_grad_enabled()):
        return probs
    family_alpha, scale = entmax_family(normalizer, lam, alpha)
    if isinstance(family_alpha, torch.Tensor):
        family_alpha = family_alpha.detach()
    return _MaskGradient.apply(probs, scores.detach(), mask, family_alpha, scale)
