"""Softmax with the normalisers' conventions: float32 for half inputs, a fully masked row gives zeros."""

import torch

from ._common import check_input


def softmax(x, dim=-1):
    """Softmax in float32 (as fairseq does); a fully masked (all -inf) row gives zeros, and
    zero (not NaN) input gradients. Off the CPU it never waits for the device (no data-dependent branch)."""
    check_input(x, "softmax")
    z = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    empty = torch.isneginf(z.amax(dim=dim, keepdim=True))
    if z.device.type == "cpu" and not bool(empty.any()):  # free on the CPU; a GPU would sync here
        return torch.softmax(z, dim=dim).to(x.dtype)
    # softmax of such a row is 0/0: compute it on zeros, then drop it
    return torch.softmax(z.masked_fill(empty, 0.0), dim=dim).masked_fill(empty, 0.0).to(x.dtype)
