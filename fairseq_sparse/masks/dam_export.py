"""A DAM search checkpoint's learned mask, binarised for `--attn-mask file`.

The search's logits (state-dict keys containing `dam_logits`) become the frozen mask
M = 1[logit > 0] (keep probability above one half); a mask that leaves a query with no key is
refused unless allowed, since that query would attend to nothing.
"""

import torch

from .dam import binarize_dam_logits, mask_densities
from .mask_file import empty_mask_problem

LOGITS_KEY = "dam_logits"
NO_DIAGONAL_KEY = "dam_no_diagonal"


class EmptyMaskError(ValueError):
    """The learned mask leaves a query with no key (the CLI then says whether the model had learned its task)."""


def find_dam_logits(state, source, key=None):
    """(key, logits, no_diagonal flag or None) of the one DAM in a model state dict."""
    if key is not None:
        if key not in state:
            raise ValueError(f"key {key!r} is not in {source}")
        found = [key]
    else:
        found = sorted(k for k in state if LOGITS_KEY in k)
        if not found:
            raise ValueError(
                f"no DAM logits (keys containing {LOGITS_KEY!r}) in {source}; was it trained with "
                f"--attn-mask dam? Its keys start: {', '.join(list(state)[:5])}"
            )
        if len(found) > 1:
            raise ValueError(f"several DAM logits in {source}: {found}; choose one with --key")
    logits = state[found[0]]
    if not isinstance(logits, torch.Tensor) or logits.dim() not in (3, 4):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"{found[0]} has shape {shape}; expected (layers, heads, positions) "
            "or (layers, heads, positions, positions)"
        )
    flag = state.get(found[0].replace(LOGITS_KEY, NO_DIAGONAL_KEY))
    return found[0], logits, None if flag is None else bool(flag)


def learned_keep_mask(state, source, length=None, key=None, no_diagonal=False, allow_empty=False):
    """(keep, report): the binarised mask, (layers, heads, n, n) with layers = 1 when shared, and
    what it is (key, shape as saved, structure, densities, and `empty` when allowed to be)."""
    key, logits, stored_no_diagonal = find_dam_logits(state, source, key)
    no_diagonal = no_diagonal or bool(stored_no_diagonal)
    positions = logits.shape[-1]
    if length is not None and not 1 <= length <= positions:
        raise ValueError(f"--length must be in [1, {positions}], got {length}")
    keep = binarize_dam_logits(logits.float(), length, no_diagonal)
    shared = keep.shape[0] == 1
    problem = empty_mask_problem(keep[0] if shared else keep)
    densities = mask_densities(keep)
    if problem and not allow_empty:
        raise EmptyMaskError(
            f"the learned mask in {source} is unusable: {problem}. Per-head densities: "
            f"{densities['density_per_head']}. The search drove those logits below 0 (a smaller --dam-lambda "
            "or a longer search may keep more); --allow-empty writes it anyway"
        )
    report = {
        "key": key,
        "shape": list(keep.shape[1:] if shared else keep.shape),
        "structure": "structured" if logits.dim() == 3 else "unstructured",
        "shared_across_layers": shared,
        "no_diagonal": no_diagonal,
        **densities,
    }
    if problem:
        report["empty"] = problem
    return keep, report
