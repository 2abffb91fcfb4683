"""When the Triton kernels can run, their lazy import, the tile sizes and the launch grid."""

import functools
import importlib.util

import torch

MAX_GRID_X = 2**31 - 1  # CUDA's limit on a grid's first axis (the second and third: 65,535)


@functools.cache
def triton_available():
    """True when the triton package is installed (it is not on every CPU machine)."""
    return importlib.util.find_spec("triton") is not None


_ON_CPU = False
_GPU_TILES = False


def interpret_on_cpu(flag=True):
    """Let the Triton kernels take CPU tensors through the Triton interpreter (tests, dry runs).

    The interpreter must have been chosen before triton was first imported in this process
    (TRITON_INTERPRET=1 at that point); returns the previous setting.
    """
    global _ON_CPU
    if flag and type(kernels().row_normalize_fwd).__name__ != "InterpretedFunction":
        raise RuntimeError(
            "the Triton interpreter needs TRITON_INTERPRET=1 set before triton is first imported in this process"
        )
    previous, _ON_CPU = _ON_CPU, bool(flag)
    return previous


def gpu_tiles_on_cpu(flag=True):
    """Under the interpreter, run the GPU's fixed tile sizes and its native half-precision dot instead of
    16 x 16 tiles upcast to float32 (slower; the tests of the code a GPU runs). Returns the previous setting."""
    global _GPU_TILES
    previous, _GPU_TILES = _GPU_TILES, bool(flag)
    return previous


def interpreting():
    return _ON_CPU


def small_tiles(device):
    """True under the interpreter with its quick 16 x 16, float32-dot tiles (see gpu_tiles_on_cpu)."""
    return _ON_CPU and device.type == "cpu" and not _GPU_TILES


def can_run(t):
    """The Triton kernels take float16/bfloat16/float32 CUDA tensors (CPU ones under interpret_on_cpu)."""
    if t.dtype not in (torch.float16, torch.bfloat16, torch.float32) or not triton_available():
        return False
    return t.is_cuda or (_ON_CPU and t.device.type == "cpu")


@functools.cache
def kernels():
    if not triton_available():
        raise RuntimeError("the fused sparse-attention kernels need the `triton` package (pip install triton)")
    from . import _triton_kernels

    return _triton_kernels


def next_pow2(n):
    return 1 << max(0, int(n) - 1).bit_length()


def flat_grid(blocks, heads):
    """The one-axis launch grid of `blocks` programs for each of `heads` (batch x heads) slices.

    The kernels split the program id back (_triton_kernels/tiles._program); one axis takes up to
    2^31 - 1 programs where a second axis of batch x heads would stop at 65,535.
    """
    total = int(blocks) * int(heads)
    if total > MAX_GRID_X:
        raise ValueError(
            f"sparse attention: {blocks} blocks x {heads} (batch x heads) = {total} programs, "
            f"over CUDA's grid limit {MAX_GRID_X}; split the batch"
        )
    return (total,)
