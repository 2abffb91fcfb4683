"""fairseq_sparse: sparse self-attention for fairseq RoBERTa/BERT.

Use as `fairseq-train --user-dir fairseq_sparse ...` or `import fairseq_sparse`. Importing
registers the models, criteria, tasks and the WordPiece BPE, and lets torch >= 2.6
(weights_only loading) read fairseq checkpoints by allowing exactly the non-tensor types they
pickle (argparse.Namespace, numpy scalars) rather than turning weights_only off. Nothing in
fairseq is patched on import: the apex fallbacks (apex_fallbacks.py) are applied, and logged in
one INFO line, when a sparse_roberta model is built. Without fairseq installed only the math
(normalizers/, masks/) is usable, and importing it loads nothing that needs fairseq.
"""
import importlib
import pkgutil

__version__ = "0.1.0"

from .checkpoint_reader import allow_checkpoint_types  # noqa: E402

allow_checkpoint_types()  # fairseq checkpoints load weights-only (fairseq_sparse/checkpoint_reader.py)


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
    from .deprecations import silence_fairseq_deprecations

    silence_fairseq_deprecations()  # fairseq's hydra/torch.cuda.amp deprecation noise, known messages only
    for _sub in ("models", "criterions", "tasks", "optim"):
        _import_submodules(_sub)
    importlib.import_module(f"{__name__}.data.bert_wordpiece_bpe")  # --bpe bert_wordpiece (converted BERTs)
