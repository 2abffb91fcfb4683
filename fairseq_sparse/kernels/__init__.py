"""GPU kernels, pure torch + triton: fused sparse attention and row normalisers (Triton), block-sparse
softmax (FlexAttention); can_run(t) says if they apply, and the tests run them under the Triton interpreter."""

from ._runtime import can_run, gpu_tiles_on_cpu, interpret_on_cpu, triton_available
from .attention import dropout_factors, sparse_attention
from .blocks import block_tables, cached_block_tables
from .flex import flex_available, flex_block_mask, flex_softmax_attention
from .row_normalize import normalize

__all__ = [
    "can_run",
    "interpret_on_cpu",
    "gpu_tiles_on_cpu",
    "triton_available",
    "sparse_attention",
    "normalize",
    "block_tables",
    "cached_block_tables",
    "dropout_factors",
    "flex_available",
    "flex_block_mask",
    "flex_softmax_attention",
]
