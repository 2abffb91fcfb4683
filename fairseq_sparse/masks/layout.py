"""One keep mask, three consumers: PyTorch's fused attention, additive score masks, and logging.

Conventions differ and are easy to flip:
  * here, and for F.scaled_dot_product_attention's bool attn_mask: True = take part in attention;
  * fairseq's MultiheadAttention / F.multi_head_attention_forward bool attn_mask and
    key_padding_mask: True = masked OUT.
An additive mask is 0 where kept and -inf where dropped.

A row with no allowed key (possible only for padded query positions, or a learned mask that
dropped a whole row) attends to nothing: its attention output is 0. PyTorch's eager SDPA
returns zeros for such rows (checked on torch 2.13 CPU), as do the plugin's normalisers.
"""

import torch


def _check_keep(keep):
    if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool:
        raise ValueError(f"keep mask must be a bool tensor, got {getattr(keep, 'dtype', type(keep).__name__)}")
    if keep.dim() not in (2, 3, 4):
        raise ValueError(f"keep mask must be (T, S), (H|1, T, S) or (B, H|1, T, S), got shape {tuple(keep.shape)}")


def allowed_mask(keep, key_padding_mask=None):
    """Bool mask for F.scaled_dot_product_attention (True = take part), padding folded in.

    keep: (T, S), (H or 1, T, S) or (B, H or 1, T, S). key_padding_mask: (B, S), True = pad
    (fairseq's convention). Returns a tensor that broadcasts against (B, H, T, S) scores:
    keep itself (made 4-d) without padding, else (B, H or 1, T, S).
    """
    _check_keep(keep)
    while keep.dim() < 4:
        keep = keep.unsqueeze(0)
    if key_padding_mask is None:
        return keep
    pad = key_padding_mask.to(torch.bool)
    if pad.dim() != 2 or pad.shape[-1] != keep.shape[-1]:
        raise ValueError(f"key_padding_mask of shape {tuple(pad.shape)} does not match {keep.shape[-1]} keys")
    return keep & ~pad[:, None, None, :]


def additive_mask(keep, dtype=torch.float32, key_padding_mask=None):
    """Float mask added to scores: 0 where allowed, -inf where not (same shape as allowed_mask)."""
    allowed = allowed_mask(keep, key_padding_mask)
    out = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return out.masked_fill_(~allowed, float("-inf"))


def density(keep, key_padding_mask=None):
    """Fraction of (query, key) pairs kept among the real ones (padding excluded on both sides).

    keep may be bool or a 0/1 float mask; returns a Python float.
    """
    keep = keep.detach()
    if keep.dtype != torch.bool:
        keep = keep > 0.5
    if key_padding_mask is None:
        return float(keep.float().mean())
    allowed = allowed_mask(keep, key_padding_mask)
    real = ~key_padding_mask.to(torch.bool)
    pairs = real[:, None, :, None] & real[:, None, None, :]  # (B, 1, T, S)
    allowed = allowed & pairs
    heads = allowed.shape[1]
    return float(allowed.sum()) / max(1.0, float(pairs.sum()) * heads)
