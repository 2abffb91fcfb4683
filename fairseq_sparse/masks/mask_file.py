"""Binary mask files (.npy): load with validation, cut to a sequence length, save atomically.

A mask file holds 0/1 (or bool) values of shape (n, n) (one mask for all heads and layers),
(heads, n, n) (one per head, shared by the layers) or (layers, heads, n, n). A batch of length
T <= n uses the top-left T x T block: position i of the sequence is row/column i of the file.
Anything else - another shape, other values, a longer sequence - is an error, never a broadcast.
"""

import os

import numpy as np
import torch

from ..atomic_files import atomic_output


def _describe(path):
    return os.fspath(path)


def empty_mask_problem(mask):
    """None when every query row of a keep mask (..., n, n) keeps a key; else a sentence saying what is empty.

    An all-zero mask, or a row with no allowed key (a query that attends to nothing), is almost
    always a failed search or a wrong file; the sentence names the first empty row.
    """
    keep = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).bool()
    if not keep.any():
        return f"it is all zero ({tuple(keep.shape)}): no query may attend to any key"
    rows = ~keep.any(dim=-1)
    if not rows.any():
        return None
    first = tuple(int(i) for i in rows.nonzero()[0])
    where = ", ".join(f"{a} {i}" for a, i in zip(("layer", "head", "row")[-len(first) :], first))
    return (
        f"{int(rows.sum())} of its {rows.numel()} query rows keep no key (first: {where}); "
        "such a query attends to nothing"
    )


def load_mask_file(path, num_heads=None, num_layers=None, allow_empty=False):
    """Read and validate a mask file; return a bool tensor of shape (n, n), (H, n, n) or (L, H, n, n).

    num_heads / num_layers, when given, must match the file's head / layer dimensions (a
    4-d file may also have a single layer, meaning shared by all layers). An all-zero mask or
    one with an empty query row is an error unless allow_empty (empty_mask_problem).
    """
    where = _describe(path)
    if not os.path.isfile(path):
        raise ValueError(f"mask file {where} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"mask file {where} is not a plain numpy array (.npy): {err}") from None
    except OSError as err:
        raise ValueError(f"mask file {where} could not be read as .npy: {err}") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"mask file {where} holds {type(array).__name__}, expected one .npy array")
    mask = validate_mask(array, num_heads=num_heads, num_layers=num_layers, source=where)
    problem = None if allow_empty else empty_mask_problem(mask)
    if problem:
        raise ValueError(f"mask file {where}: {problem}. Pass --attn-mask-allow-empty to use it anyway")
    return mask


def validate_mask(array, num_heads=None, num_layers=None, source="mask"):
    """Check shape and 0/1 values of a mask array; return it as a bool torch tensor."""
    array = np.asarray(array)
    if array.ndim not in (2, 3, 4):
        raise ValueError(
            f"{source} has shape {tuple(array.shape)}; expected (n, n), (heads, n, n) or (layers, heads, n, n)"
        )
    n = array.shape[-1]
    if array.shape[-2] != n or n < 1:
        raise ValueError(f"{source} has shape {tuple(array.shape)}; its last two dimensions must be equal (n x n)")
    if array.dtype != np.bool_:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise ValueError(f"{source} has dtype {array.dtype}; expected bool, integer or float 0/1 values")
        bad = ~((array == 0) | (array == 1))
        if bad.any():
            index = tuple(int(k) for k in np.argwhere(bad)[0])
            raise ValueError(f"{source} holds values other than 0/1: {array[index].item()!r} at index {index}")
    if array.ndim >= 3 and num_heads is not None and array.shape[-3] != num_heads:
        raise ValueError(
            f"{source} has {array.shape[-3]} heads (shape {tuple(array.shape)}); the model has {num_heads}"
        )
    if array.ndim == 4 and num_layers is not None and array.shape[0] not in (1, num_layers):
        raise ValueError(
            f"{source} has {array.shape[0]} layers (shape {tuple(array.shape)}); the model has {num_layers}"
        )
    return torch.from_numpy(array.astype(np.bool_, copy=False).copy())


def slice_mask(mask, length, source="mask"):
    """Top-left length x length block of a mask (..., n, n); an error if length > n."""
    n = mask.shape[-1]
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"sequence length must be a positive integer, got {length!r}")
    if length > n:
        raise ValueError(
            f"sequence length {length} exceeds the {n} positions of {source}; "
            f"use sequences of at most {n} tokens or a mask made for {length}"
        )
    return mask[..., :length, :length]


def mask_for_layer(mask, layer):
    """The (heads or 1, n, n) keep mask that layer `layer` uses."""
    if mask.dim() == 2:
        return mask.unsqueeze(0)
    if mask.dim() == 3:
        return mask
    if mask.dim() == 4:
        if mask.shape[0] == 1:
            return mask[0]
        if not 0 <= layer < mask.shape[0]:
            raise ValueError(f"layer {layer} out of range: the mask has {mask.shape[0]} layers")
        return mask[layer]
    raise ValueError(f"mask of shape {tuple(mask.shape)} is not 2-, 3- or 4-dimensional")


def save_mask_file(path, mask):
    """Write a bool mask to `path` (.npy) through a temporary file, so no half-written file remains."""
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    validate_mask(array, source="mask to save")
    with atomic_output(path, "wb") as handle:
        np.save(handle, array.astype(np.bool_))
