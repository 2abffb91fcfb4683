"""fairseq_sparse: sparse self-attention for fairseq RoBERTa/BERT.

Use as `fairseq-train --user-dir fairseq_sparse ...` or `import fairseq_sparse`. Importing
registers the models, criteria, tasks and the WordPiece BPE, and lets torch >= 2.6
(weights_only loading) read fairseq checkpoints by allowing exactly the non-tensor types they
pickle (argparse.Namespace, numpy scalars) rather than turning weights_only off.
"""
import argparse
import importlib
import pkgutil

import torch

__version__ = "0.1.0"


def _checkpoint_safe_globals():
    """The non-tensor types fairseq checkpoints pickle: the argparse config, and numpy scalars
    (a best validation metric such as STS-B's pearson_and_spearman is a numpy float)."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64)]
    return [argparse.Namespace, np.dtype, scalar] + dtypes


if hasattr(torch.serialization, "add_safe_globals"):
    torch.serialization.add_safe_globals(_checkpoint_safe_globals())


def _import_submodules(package_name):
    """Import every module of a sub-package so its @register_* decorators run.

    fairseq's --user-dir auto-imports models/ and tasks/ but not criterions/, and a plain
    `import fairseq_sparse` imports none of them.
    """
    package = importlib.import_module(f"{__name__}.{package_name}")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def _fairseq_available():
    """The math (normalizers/, masks/) needs only torch; everything else needs fairseq."""
    try:
        import fairseq  # noqa: F401
    except ImportError:
        return False
    return True


if _fairseq_available():
    for _sub in ("models", "criterions", "tasks", "optim"):
        _import_submodules(_sub)
    importlib.import_module(f"{__name__}.data.bert_wordpiece_bpe")  # --bpe bert_wordpiece (converted BERTs)
