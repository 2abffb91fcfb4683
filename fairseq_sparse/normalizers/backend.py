"""The backend switch: the fused C++ kernels (fairseq_sparse/csrc) for CPU tensors when the extension is built,
else the eager PyTorch code.

The C++ kernels run each row's whole threshold search in one parallel op. Elsewhere (CUDA tensors, the extension
not built, FAIRSEQ_SPARSE_EAGER=1 or inside `eager_backend()`) the eager code of sparsemax.py / entmax.py runs.
A missing extension costs several times the CPU time, so it is logged as a WARNING naming the fix, once.
"""

import contextlib
import functools
import importlib
import logging
import os

import torch

logger = logging.getLogger(__name__)
_FORCE_EAGER = [os.environ.get("FAIRSEQ_SPARSE_EAGER", "") == "1"]
BUILD_COMMAND = "pip install --no-build-isolation -e .  (or, in a checkout: python setup.py build_ext --inplace)"


@functools.cache
def _fused_ops():
    """torch.ops.fairseq_sparse if the C++ extension loads, else None (a WARNING, once)."""
    try:
        importlib.import_module("fairseq_sparse._C")  # registers the ops
    except ImportError as e:
        logger.warning(
            "fairseq_sparse: the fused C++ normalisers are not built (%s); CPU attention runs the eager PyTorch "
            "normalisers, several times slower. Build them with: %s",
            e,
            BUILD_COMMAND,
        )
        return None
    return torch.ops.fairseq_sparse


def fused_ops(x):
    """The fused ops if they can run on x (a non-empty CPU tensor), else None."""
    if _FORCE_EAGER[0] or x.device.type != "cpu" or x.numel() == 0:
        return None
    return _fused_ops()


def backend():
    """'fused' when CPU inputs go to the C++ kernels, else 'eager' (warns once when the extension is missing)."""
    return "eager" if _FORCE_EAGER[0] or _fused_ops() is None else "fused"


@contextlib.contextmanager
def eager_backend():
    """Run the normalisers on the eager PyTorch path inside this block (tests, comparisons)."""
    previous = _FORCE_EAGER[0]
    _FORCE_EAGER[0] = True
    try:
        yield
    finally:
        _FORCE_EAGER[0] = previous
