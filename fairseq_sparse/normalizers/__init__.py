"""Normalisers of attention scores, pure torch: softmax, sparsemax, sparsegen-lin, entmax-1.5, alpha-entmax, each
mapping rows onto the simplex (-inf -> 0, masked rows -> 0, float32 for half inputs) with an O(n)-per-row backward."""

import functools
import importlib

import torch

from ._common import check_alpha, check_input, check_lam
from .entmax import entmax15, entmax_bisect
from .registry import DEFAULT_N_ITER, SPECS, spec
from .softmax import softmax
from .sparsemax import sparsegen_lin, sparsemax

# name -> function, from the registry (registry.py): each normaliser is the function named like its entry
NORMALIZERS = {
    name: getattr(importlib.import_module(f".{entry.module}", __name__), name) for name, entry in SPECS.items()
}


def normalizer_params(name, lam=0.0, alpha=1.5, n_iter=None):
    """The keyword arguments normaliser `name` takes (its registry params), picked from a run's lam / alpha / n_iter."""
    given = {"lam": lam, "alpha": alpha, "n_iter": n_iter}
    return {key: given[key] for key in sorted(spec(name).params)}


def entmax_family(name, lam=0.0, alpha=1.5):
    """(alpha, scale) such that normaliser `name` = alpha-entmax(scale * scores) (softmax: the alpha -> 1 limit)."""
    entry = spec(name)
    scale = 1.0 / (1.0 - float(lam)) if "lam" in entry.params else 1.0
    return (alpha if entry.alpha is None else entry.alpha), scale


def get_normalizer(name, **kw):
    """Return f(x, dim=-1) for a normaliser name, with its parameters bound.

    get_normalizer("sparsegen_lin", lam=-4); get_normalizer("entmax_bisect", alpha=1.3).
    """
    params = spec(name).params
    unknown = set(kw) - params
    if unknown:
        raise ValueError(f"normalizer {name!r} takes parameters {sorted(params)}, got {sorted(unknown)}")
    if "lam" in kw:
        check_lam(kw["lam"], f"{name}: lam")
    if "alpha" in kw and not isinstance(kw["alpha"], torch.Tensor):
        check_alpha(kw["alpha"], f"{name}: alpha")
    fn = NORMALIZERS[name]
    return functools.partial(fn, **kw) if kw else fn


__all__ = [
    "softmax",
    "sparsemax",
    "sparsegen_lin",
    "entmax15",
    "entmax_bisect",
    "get_normalizer",
    "NORMALIZERS",
    "normalizer_params",
    "entmax_family",
    "check_lam",
    "check_alpha",
    "check_input",
    "DEFAULT_N_ITER",
]
