"""PyTorch's fused AdamW in the shape fairseq's FairseqAdam expects of apex's FusedAdam.

fairseq's `--optimizer adam` asks `fairseq.optim.fused_adam.get_fused_adam_class()` for a fused
Adam on CUDA; when apex's is not usable, `fairseq_sparse.apex_fallbacks` hands it
`native_fused_adam` instead: torch.optim.AdamW(fused=True), the same AdamW update.
"""

import torch


def _flat_tensors(params):
    for p in params:
        if isinstance(p, dict):
            yield from p["params"]
        else:
            yield p


class NativeFusedAdamW(torch.optim.AdamW):
    """torch.optim.AdamW(fused=True) with the capability flags fairseq's FP16Optimizer checks.

    With --fp16/--bf16 fairseq flattens the fp32 master weights into one tensor and refuses an
    optimizer without `supports_flat_params`; AdamW is element-wise, so a flat tensor is fine.
    """

    supports_flat_params = True
    supports_memory_efficient_fp16 = False  # half-precision params go to fairseq's Adam instead

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(
            params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, fused=True
        )


def native_fused_adam(params, use_fp16_stats=False, **config):
    """What fairseq's FairseqAdam builds when it asks for a fused Adam and apex has none.

    torch.optim.AdamW(fused=True) for fp32 CUDA parameters (with --fp16/--bf16 fairseq hands the
    optimizer fp32 master copies). Half-precision parameters (--memory-efficient-fp16/bf16) keep
    fairseq's Adam, which does its arithmetic in fp32 as apex's FusedAdam does.
    """
    if use_fp16_stats:
        raise NotImplementedError("--fp16-adam-stats needs apex's FusedAdamV1 (fused_adam_cuda)")
    params = list(params)
    tensors = list(_flat_tensors(params))
    if tensors and all(t.is_cuda and t.dtype == torch.float32 for t in tensors):
        return NativeFusedAdamW(params, **config)
    from fairseq.optim.adam import Adam

    return Adam(params, **config)
