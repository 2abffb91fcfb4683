"""fairseq_sparse: sparse self-attention (SSAF normalisers, SparseBERT masks), head analysis, for fairseq RoBERTa.
Importing registers models, criteria, tasks, optimizer and BPE with fairseq; normalizers/ and masks/ need only torch."""

import importlib
import pkgutil

__version__ = "0.1.0"

from .checkpoint_reader import allow_checkpoint_types  # noqa: E402

# torch >= 2.6 loads weights-only: fairseq's own loaders must accept the few non-tensor types its
# checkpoints pickle (argparse.Namespace, numpy scalars), allowed here by name and logged once,
# instead of turning weights_only off. Nothing in fairseq is patched on import; building a
# sparse_roberta model does patch it (apex_fallbacks.py: fairseq's fused-Adam getter is swapped, its
# fused LayerNorm may be switched off) and logs the LayerNorm and Adam in use.
allow_checkpoint_types()


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
    # fairseq's daemon prefetch thread, killed mid-batch at exit, aborts the process (rc 134) after
    # training; stop it at exit instead (the reason in _shutdown.py).
    import atexit

    from ._shutdown import stop_fairseq_prefetch_threads

    atexit.register(stop_fairseq_prefetch_threads)
    for _sub in ("models", "criterions", "tasks", "optim"):
        _import_submodules(_sub)
    importlib.import_module(f"{__name__}.data.bert_wordpiece_bpe")  # --bpe bert_wordpiece (converted BERTs)
