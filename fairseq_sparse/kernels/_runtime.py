"""When the Triton kernels can run, and their lazy import."""
import functools
import importlib.util
import os

import torch

MODES = {"sparsemax": 0, "sparsegen_lin": 0, "entmax15": 1, "entmax_bisect": 2}


@functools.lru_cache(maxsize=None)
def triton_available():
    """True when the triton package is installed (it is not on every CPU machine)."""
    return importlib.util.find_spec("triton") is not None


def interpreting():
    return os.environ.get("TRITON_INTERPRET") == "1"


def can_run(t):
    """The Triton kernels take float16/bfloat16/float32 CUDA tensors, or CPU ones under TRITON_INTERPRET=1."""
    if t.dtype not in (torch.float16, torch.bfloat16, torch.float32) or not triton_available():
        return False
    return t.is_cuda or (interpreting() and t.device.type == "cpu")


@functools.lru_cache(maxsize=None)
def kernels():
    if not triton_available():
        raise RuntimeError("the fused sparse-attention kernels need the `triton` package (pip install triton)")
    from . import _triton_kernels
    return _triton_kernels


def next_pow2(n):
    return 1 << max(0, int(n) - 1).bit_length()
