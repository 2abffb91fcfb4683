"""GPU kernels: fused sparse attention and row-wise normalisers (Triton), block-sparse softmax (FlexAttention).

Pure torch + triton, no fairseq. The Triton kernels run on CUDA tensors, and on CPU tensors
under TRITON_INTERPRET=1 (set it before the first call; used by the tests). can_run(t) says
whether they can run for a tensor; the attention module checks it and falls back to the eager
path otherwise.
"""
from ._runtime import can_run, triton_available
from .attention import block_tables, dropout_factors, sparse_attention
from .flex import flex_block_mask, flex_softmax_attention
from .rowwise import normalize

__all__ = ["can_run", "triton_available", "sparse_attention", "normalize", "block_tables", "dropout_factors",
           "flex_block_mask", "flex_softmax_attention"]
