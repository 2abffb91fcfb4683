"""GPU kernels, pure torch + triton: fused sparse attention and row-wise normalisers (Triton), block-sparse
softmax (FlexAttention); can_run(t) says if they apply, and the tests run them under the Triton interpreter."""
from ._runtime import can_run, interpret_on_cpu, triton_available
from .attention import block_tables, dropout_factors, sparse_attention
from .flex import flex_available, flex_block_mask, flex_softmax_attention
from .rowwise import normalize

__all__ = ["can_run", "interpret_on_cpu", "triton_available", "sparse_attention", "normalize", "block_tables", "dropout_factors",
           "flex_available", "flex_block_mask", "flex_softmax_attention"]
