"""When the Triton kernels can run, and their lazy import."""
import functools
import importlib.util

import torch

MODES = {"sparsemax": 0, "sparsegen_lin": 0, "entmax15": 1, "entmax_bisect": 2}


@functools.lru_cache(maxsize=None)
def triton_available():
    """True when the triton package is installed (it is not on every CPU machine)."""
    return importlib.util.find_spec("triton") is not None


_ON_CPU = False


def interpret_on_cpu(flag=True):
    """Let the Triton kernels take CPU tensors through the Triton interpreter (tests, dry runs).

    The interpreter must have been chosen before triton was first imported in this process
    (TRITON_INTERPRET=1 at that point); returns the previous setting.
    """
    global _ON_CPU
    if flag and type(kernels().rowwise_fwd).__name__ != "InterpretedFunction":
        raise RuntimeError("the Triton interpreter needs TRITON_INTERPRET=1 set before triton is first "
                           "imported in this process")
    previous, _ON_CPU = _ON_CPU, bool(flag)
    return previous


def interpreting():
    return _ON_CPU


def can_run(t):
    """The Triton kernels take float16/bfloat16/float32 CUDA tensors (CPU ones under interpret_on_cpu)."""
    if t.dtype not in (torch.float16, torch.bfloat16, torch.float32) or not triton_available():
        return False
    return t.is_cuda or (_ON_CPU and t.device.type == "cpu")


@functools.lru_cache(maxsize=None)
def kernels():
    if not triton_available():
        raise RuntimeError("the fused sparse-attention kernels need the `triton` package (pip install triton)")
    from . import _triton_kernels
    return _triton_kernels


def next_pow2(n):
    return 1 << max(0, int(n) - 1).bit_length()
