"""The Triton kernels, imported lazily by kernels._runtime (so TRITON_INTERPRET=1 can come first): family.py the
threshold math every kernel shares, tiles.py the attention tiles, row_normalize.py and attention_*.py the kernels."""

from .attention_bwd import attn_bwd_dkdv, attn_bwd_dq
from .attention_fwd import attn_fwd
from .row_normalize import row_normalize_bwd, row_normalize_fwd
from .tiles import dropout_scale_dense

__all__ = ["row_normalize_fwd", "row_normalize_bwd", "attn_fwd", "attn_bwd_dq", "attn_bwd_dkdv", "dropout_scale_dense"]
