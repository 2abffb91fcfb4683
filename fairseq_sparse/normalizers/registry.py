"""The one table of normalisers: each one's name, where its math lives, its parameters, the entmax-family alpha it
fixes, and the mode id its fast kernels (C++ `kind`, Triton `MODE`) know it by.

Adding a normaliser touches its math (a function named like its entry, in `module`), its fast kernels (a new mode
id) and this table; the eager, C++ and Triton paths all read names, parameters and modes from here.
"""

from dataclasses import dataclass

# The fast kernels' mode ids (csrc/normalizers.cpp `kind`, kernels/_triton_kernels `MODE`): one threshold search
# each, the entmax-family alpha fixed by the mode or read per row / head.
SPARSEMAX_MODE, ENTMAX15_MODE, ENTMAX_ALPHA_MODE = 0, 1, 2
DEFAULT_N_ITER = 50  # entmax_bisect's cap on threshold iterations (eager, C++ and Triton paths)


@dataclass(frozen=True)
class NormalizerSpec:
    """name: the function's name and the --attn-normalizer value; module: the normalizers/ module defining it;
    params: its keyword parameters; alpha: the entmax-family alpha it fixes (None: a parameter);
    mode: its fast-kernel mode id (None: no sparse kernel, e.g. softmax)."""

    name: str
    module: str
    params: frozenset = frozenset()
    alpha: float = None
    mode: int = None


SPECS = {
    spec.name: spec
    for spec in (
        NormalizerSpec("softmax", "softmax", alpha=1.0),
        NormalizerSpec("sparsemax", "sparsemax", alpha=2.0, mode=SPARSEMAX_MODE),
        NormalizerSpec("sparsegen_lin", "sparsemax", frozenset({"lam"}), alpha=2.0, mode=SPARSEMAX_MODE),
        NormalizerSpec("entmax15", "entmax", alpha=1.5, mode=ENTMAX15_MODE),
        NormalizerSpec("entmax_bisect", "entmax", frozenset({"alpha", "n_iter"}), mode=ENTMAX_ALPHA_MODE),
    )
}
KERNEL_NORMALIZERS = tuple(name for name, spec in SPECS.items() if spec.mode is not None)


def spec(name):
    """The registry entry of `name`; ValueError naming the bad name and the choices."""
    if name not in SPECS:
        raise ValueError(f"unknown normalizer {name!r}; expected one of {sorted(SPECS)}")
    return SPECS[name]


def kernel_mode(name, caller):
    """The fast kernels' mode id of `name`; ValueError if it has none (softmax) or is unknown."""
    entry = SPECS.get(name)
    if entry is None or entry.mode is None:
        raise ValueError(f"{caller}: normalizer {name!r} is not one of {sorted(KERNEL_NORMALIZERS)}")
    return entry.mode


def resolve_n_iter(n_iter):
    """entmax_bisect's iteration cap: DEFAULT_N_ITER for None, else a positive integer (ValueError naming it)."""
    if n_iter is None:
        return DEFAULT_N_ITER
    if int(n_iter) != n_iter or int(n_iter) < 1:
        raise ValueError(f"entmax_bisect: n_iter must be a positive integer, got {n_iter}")
    return int(n_iter)
