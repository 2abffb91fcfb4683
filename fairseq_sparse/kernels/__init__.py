"""GPU kernels: fused sparse attention and row-wise normalisers (Triton), block-sparse softmax (FlexAttention).

Pure torch + triton, no fairseq. The Triton kernels run on CUDA tensors; the tests run them on
CPU tensors through the Triton interpreter (TRITON_INTERPRET=1 before triton is imported, then
interpret_on_cpu()). can_run(t) says whether they can run for a tensor; the attention module
checks it and falls back to the eager path otherwise.
"""
from ._runtime import can_run, interpret_on_cpu, triton_available
from .attention import block_tables, dropout_factors, sparse_attention
from .flex import flex_available, flex_block_mask, flex_softmax_attention
from .rowwise import normalize

__all__ = ["can_run", "interpret_on_cpu", "triton_available", "sparse_attention", "normalize", "block_tables", "dropout_factors",
           "flex_available", "flex_block_mask", "flex_softmax_attention"]
