"""Attention masks, pure torch: fixed sparse patterns, SparseBERT's learnable DAM and its export, mask files,
and masked normalisation. A keep mask is bool with True = query i may attend key j (SDPA's convention)."""

from .dam import DifferentiableAttentionMask, binarize_dam_logits, gumbel_sigmoid, mask_densities
from .layout import additive_mask, allowed_mask, density
from .mask_file import load_mask_file, mask_for_layer, save_mask_file, slice_mask, validate_mask
from .masked_normalize import masked_normalize
from .patterns import PATTERNS, build_fixed_mask, pattern_params

__all__ = [
    "PATTERNS",
    "build_fixed_mask",
    "pattern_params",
    "allowed_mask",
    "additive_mask",
    "density",
    "masked_normalize",
    "DifferentiableAttentionMask",
    "gumbel_sigmoid",
    "binarize_dam_logits",
    "mask_densities",
    "load_mask_file",
    "validate_mask",
    "slice_mask",
    "mask_for_layer",
    "save_mask_file",
]
