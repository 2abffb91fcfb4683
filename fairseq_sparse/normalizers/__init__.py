"""Normalisers of attention scores, pure torch: softmax, sparsemax, sparsegen-lin, entmax-1.5, alpha-entmax, each
mapping rows onto the simplex (-inf -> 0, masked rows -> 0, float32 for half inputs) with an O(n)-per-row backward."""
import functools

import torch

from ._common import check_alpha, check_input, check_lam
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
# Every normaliser is alpha-entmax of (scaled) scores; entmax_bisect takes its alpha as a parameter.
_FIXED_ALPHA = {"softmax": 1.0, "sparsemax": 2.0, "sparsegen_lin": 2.0, "entmax15": 1.5}


def _check_name(name):
    if name not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {name!r}; expected one of {sorted(NORMALIZERS)}")


def normalizer_params(name, lam=0.0, alpha=1.5, n_iter=None):
    """The keyword arguments normaliser `name` takes (see _PARAMS), picked from a run's lam / alpha / n_iter."""
    _check_name(name)
    given = {"lam": lam, "alpha": alpha, "n_iter": n_iter}
    return {key: given[key] for key in sorted(_PARAMS.get(name, ()))}


def entmax_family(name, lam=0.0, alpha=1.5):
    """(alpha, scale) such that normaliser `name` = alpha-entmax(scale * scores) (softmax: the alpha -> 1 limit)."""
    _check_name(name)
    scale = 1.0 / (1.0 - float(lam)) if name == "sparsegen_lin" else 1.0
    return _FIXED_ALPHA.get(name, alpha), scale


def get_normalizer(name, **kw):
    """Return f(x, dim=-1) for a normaliser name, with its parameters bound.

    get_normalizer("sparsegen_lin", lam=-4); get_normalizer("entmax_bisect", alpha=1.3).
    """
    _check_name(name)
    unknown = set(kw) - _PARAMS.get(name, set())
    if unknown:
        raise ValueError(
            f"normalizer {name!r} takes parameters {sorted(_PARAMS.get(name, set()))}, got {sorted(unknown)}"
        )
    if name == "sparsegen_lin" and "lam" in kw:
        check_lam(kw["lam"], "sparsegen_lin: lam")
    if name == "entmax_bisect" and "alpha" in kw and not isinstance(kw["alpha"], torch.Tensor):
        check_alpha(kw["alpha"], "entmax_bisect: alpha")
    fn = NORMALIZERS[name]
    return functools.partial(fn, **kw) if kw else fn


__all__ = ["softmax", "sparsemax", "sparsegen_lin", "entmax15", "entmax_bisect", "get_normalizer", "NORMALIZERS",
           "normalizer_params", "entmax_family", "check_lam", "check_alpha"]
