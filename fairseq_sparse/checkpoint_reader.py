"""The one place the plugin reads torch checkpoint files, without running code from them.

torch >= 2.6 loads with weights_only=True: tensors and plain containers only, unless a type
is allowed explicitly. fairseq checkpoints pickle a few other types, allowed here and nowhere
else: the argparse config, and numpy scalars (a best validation metric such as STS-B's
pearson_and_spearman is a numpy float). Anything else in a file (a class with a
__reduce__ that calls os.system, say) is refused, never unpickled.

Pure torch + numpy: importable without fairseq.
"""

import argparse
import logging
import os
import pickle
import re

import torch

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6
PICKLE_MAGIC = b"\x80"  # torch's legacy format (a pickle, protocol >= 2)
logger = logging.getLogger(__name__)
_logged_allow_list = False


def checkpoint_safe_globals():
    """The non-tensor types fairseq checkpoints pickle."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64)]
    return [argparse.Namespace, np.dtype, scalar] + dtypes


def allow_checkpoint_types():
    """Let torch's weights-only loader (ours and fairseq's own) accept fairseq checkpoints (logged once)."""
    global _logged_allow_list
    allowed = checkpoint_safe_globals()
    if not _logged_allow_list:
        logger.info(
            "torch.load weights-only allow-list += %s (types fairseq checkpoints pickle)",
            ", ".join(sorted({t.__module__ + "." + t.__name__ for t in allowed})),
        )
        _logged_allow_list = True
    torch.serialization.add_safe_globals(allowed)


def read_checkpoint(path, fairseq=True, mmap=False):
    """The object saved in `path`, loaded weights-only on the CPU.

    fairseq=True: it must be a fairseq checkpoint (a dict with a "model" state dict).
    Raises FileNotFoundError for a missing file and ValueError, naming the file, for one that
    is not a torch file, is truncated, holds a type outside the allow-list, or (fairseq=True)
    is not a fairseq checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_MAGIC)):
        raise ValueError(f"{path!r} is not a torch checkpoint (it starts with {head!r}, not a torch.save file)")
    allow_checkpoint_types()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and head.startswith(ZIP_MAGIC))
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = found.group(1) if found else str(err).strip().splitlines()[-1]
        raise ValueError(
            f"{path!r} holds an object a checkpoint does not need, and loading it could run code: {what} "
            f"(read are tensors, containers and {', '.join(t.__name__ for t in checkpoint_safe_globals())})"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError) as err:
        raise ValueError(f"cannot read checkpoint {path!r}: truncated or corrupt torch file ({err})") from None
    if fairseq and not (isinstance(state, dict) and isinstance(state.get("model"), dict)):
        found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{path!r} is not a fairseq checkpoint: expected a dict with a 'model' state dict, found {found}"
        )
    return state


def read_model_state(path):
    """The model state dict of a fairseq checkpoint, or a bare state dict as saved by torch.save."""
    state = read_checkpoint(path, fairseq=False)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        return state["model"]
    if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
    raise ValueError(f"{path!r} is neither a fairseq checkpoint nor a state dict of tensors: found {found}")
