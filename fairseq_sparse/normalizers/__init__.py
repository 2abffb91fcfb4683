"""Normalisers for attention scores: softmax and its sparse alternatives.

Pure torch, no fairseq: every function maps scores to rows on the probability simplex
along `dim`, gives -inf entries exactly 0, returns all zeros for a fully masked row,
computes in float32 for half inputs, and has an O(n)-per-row custom backward.
"""
import functools

import torch

from ._common import check_input
from .entmax import entmax15, entmax_bisect
from .sparsemax import sparsemax, sparsegen_lin


def softmax(x, dim=-1):
    """Softmax in float32 (as fairseq does); a fully masked (all -inf) row gives zeros, and
    zero (not NaN) input gradients."""
    check_input(x, "softmax")
    z = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    empty = torch.isneginf(z.amax(dim=dim, keepdim=True))
    if bool(empty.any()):  # softmax of such a row is 0/0: compute it on zeros, then drop it
        return torch.softmax(z.masked_fill(empty, 0.0), dim=dim).masked_fill(empty, 0.0).to(x.dtype)
    return torch.softmax(z, dim=dim).to(x.dtype)


NORMALIZERS = {
    "softmax": softmax,
    "sparsemax": sparsemax,
    "sparsegen_lin": sparsegen_lin,
    "entmax15": entmax15,
    "entmax_bisect": entmax_bisect,
}
_PARAMS = {"sparsegen_lin": {"lam"}, "entmax_bisect": {"alpha", "n_iter"}}


def get_normalizer(name, **kw):
    """Return f(x, dim=-1) for a normaliser name, with its parameters bound.

    get_normalizer("sparsegen_lin", lam=-4); get_normalizer("entmax_bisect", alpha=1.3).
    """
    if name not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {name!r}; expected one of {sorted(NORMALIZERS)}")
    unknown = set(kw) - _PARAMS.get(name, set())
    if unknown:
        raise ValueError(
            f"normalizer {name!r} takes parameters {sorted(_PARAMS.get(name, set()))}, got {sorted(unknown)}"
        )
    if name == "sparsegen_lin" and "lam" in kw and not float(kw["lam"]) < 1.0:
        raise ValueError(f"sparsegen_lin: lam must be < 1, got {kw['lam']}")
    if name == "entmax_bisect" and "alpha" in kw and not isinstance(kw["alpha"], torch.Tensor):
        if not 1.0 < float(kw["alpha"]) <= 2.0:
            raise ValueError(f"entmax_bisect: alpha must be in (1, 2], got {kw['alpha']}")
    fn = NORMALIZERS[name]
    return functools.partial(fn, **kw) if kw else fn


__all__ = ["softmax", "sparsemax", "sparsegen_lin", "entmax15", "entmax_bisect", "get_normalizer", "NORMALIZERS"]
