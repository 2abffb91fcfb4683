"""Fixed attention patterns: (length, params) -> bool keep mask of shape (length, length).

keep[i, j] is True when query i may attend to key j. Every pattern is bidirectional (an
encoder's), works for any length >= 1, and keeps at least one key in every row: all of them
keep the diagonal except `no_diagonal`, which keeps it only for a length-1 sequence (it has no
other key).

Padding: the attention module computes the pattern for the padded batch length T and removes
padded keys with its key_padding_mask. Sequences are right-padded, so real tokens are positions
0..L-1 and their rows see the same pattern as an unpadded sequence, cut at L. Global tokens are
the first positions (position 0 is [CLS] / <s>), which padding never removes.
"""

import inspect

import torch


def _positions(length, device):
    idx = torch.arange(length, device=device)
    return idx[:, None], idx[None, :]


def _distance(length, device):
    i, j = _positions(length, device)
    return (i - j).abs()


def _with_global(keep, num_global):
    """Global tokens attend everywhere and are attended from everywhere (rows and columns)."""
    if num_global > 0:
        keep[:num_global, :] = True
        keep[:, :num_global] = True
    return keep


def none(length, device=None):
    """Full attention: every query sees every key."""
    return torch.ones(length, length, dtype=torch.bool, device=device)


def no_diagonal(length, device=None):
    """Everything except the self position (SparseBERT's M = 1 - I).

    A length-1 sequence keeps its diagonal, its only key; any longer row keeps n - 1 keys.
    """
    if length == 1:
        return none(1, device)
    return ~torch.eye(length, dtype=torch.bool, device=device)


def strided(length, stride=8, device=None):
    """Sparse Transformer 'strided' (Child et al., 2019), bidirectional.

    Keeps |i - j| < stride (the local band) and |i - j| a multiple of stride (the strided
    columns), so any key is reachable in two hops.
    """
    d = _distance(length, device)
    return (d < stride) | (d % stride == 0)


def fixed(length, block=16, summary=1, device=None):
    """Sparse Transformer 'fixed' (Child et al., 2019), bidirectional.

    Keeps keys in the query's own block of `block` positions, and the last `summary` positions
    of every block (summary columns, seen by all queries). A last, partial block has only its
    own block and the summary columns of the full blocks.
    """
    i, j = _positions(length, device)
    return (i // block == j // block) | (j % block >= block - summary)


def longformer(length, window=8, num_global=1, device=None):
    """Longformer (Beltagy et al., 2020): sliding window plus global tokens.

    Keeps |i - j| <= window (window keys on each side) and the rows and columns of the first
    `num_global` positions.
    """
    keep = _distance(length, device) <= window
    return _with_global(keep, num_global)


def bigbird(length, block=8, window=1, num_global=1, random_blocks=1, seed=0, device=None):
    """BigBird (Zaheer et al., 2020): block window + global tokens + random blocks.

    Positions are cut into blocks of `block` (the last may be partial). Query block I keeps key
    blocks J with |I - J| <= window, plus `random_blocks` other key blocks drawn without
    replacement from those outside its window, plus the rows and columns of the first
    `num_global` positions. The draw uses a generator seeded with `seed`, so a given (length,
    params) always gives the same mask. The random part, as in BigBird, is not symmetric.
    """
    num_blocks = -(-length // block)
    b = torch.arange(num_blocks)
    block_keep = (b[:, None] - b[None, :]).abs() <= window
    if random_blocks > 0:
        gen = torch.Generator().manual_seed(seed)
        for row in range(num_blocks):
            outside = (~block_keep[row]).nonzero().flatten()
            if outside.numel():
                pick = outside[torch.randperm(outside.numel(), generator=gen)[:random_blocks]]
                block_keep[row, pick] = True
    of_block = torch.arange(length) // block
    keep = block_keep[of_block[:, None], of_block[None, :]].to(device)
    return _with_global(keep, num_global)


def star(length, radius=1, num_global=1, ring=False, device=None):
    """Star-Transformer (Guo et al., 2019): neighbour links plus relay node(s), bidirectional.

    Keeps |i - j| <= radius and the rows and columns of the first `num_global` positions (the
    relay; position 0 is [CLS]). ring=True also links across the ends (circular distance over
    the non-global positions); it is computed on the padded length, so it is exact only for
    unpadded batches.
    """
    keep = _distance(length, device) <= radius
    if ring:
        satellites = length - num_global
        if satellites > 0:
            d = _distance(satellites, device)
            sub = keep[num_global:, num_global:]
            keep[num_global:, num_global:] = sub | (satellites - d <= radius)
    return _with_global(keep, num_global)


def logsparse(length, base=2, window=0, device=None):
    """LogSparse (Li et al., 2019), bidirectional: exponentially spaced positions.

    Keeps the query itself, keys at distance base**k (k = 0, 1, 2, ...) on either side, and
    the local band |i - j| <= window.
    """
    d = _distance(length, device)
    keep = d <= window
    step = 1
    while step < length:
        keep |= d == step
        step *= base
    return keep


def file(length, path, layer=None, device=None):
    """A mask loaded from a .npy file (see mask_file), cut to its top-left length x length block.

    Returns (n, n) or (heads, n, n); a per-layer (layers, heads, n, n) file needs `layer`.
    """
    from .mask_file import load_mask_file, mask_for_layer, slice_mask

    mask = slice_mask(load_mask_file(path), length, source=path)
    if mask.dim() == 4:
        if layer is None:
            raise ValueError(f"mask file {path} holds {mask.shape[0]} layers: pass layer=<index>")
        mask = mask_for_layer(mask, layer)
    elif layer is not None:
        mask = mask_for_layer(mask, layer)
    return mask.to(device)


PATTERNS = {
    "none": none,
    "no_diagonal": no_diagonal,
    "strided": strided,
    "fixed": fixed,
    "longformer": longformer,
    "bigbird": bigbird,
    "star": star,
    "logsparse": logsparse,
    "file": file,
}

# (minimum value) for each integer parameter; `ring` is a bool, `path` a string.
_INT_MINIMUM = {
    "stride": 1,
    "block": 1,
    "summary": 0,
    "window": 0,
    "num_global": 0,
    "random_blocks": 0,
    "radius": 0,
    "base": 2,
    "layer": 0,
}


def pattern_params(name):
    """The parameter names (with their defaults) a pattern accepts."""
    if name not in PATTERNS:
        raise ValueError(f"unknown attention mask pattern {name!r}; expected one of {sorted(PATTERNS)}")
    sig = inspect.signature(PATTERNS[name])
    return {
        k: (None if p.default is inspect.Parameter.empty else p.default)
        for k, p in sig.parameters.items()
        if k not in ("length", "device")
    }


def _check_param(name, key, value):
    if key in _INT_MINIMUM:
        if key == "layer" and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: {key} must be an integer, got {value!r}")
        if value < _INT_MINIMUM[key]:
            raise ValueError(f"{name}: {key} must be >= {_INT_MINIMUM[key]}, got {value}")
    elif key == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: seed must be an integer, got {value!r}")
    elif key == "ring":
        if not isinstance(value, bool):
            raise ValueError(f"{name}: ring must be True or False, got {value!r}")
    elif key == "path":
        if not isinstance(value, (str, bytes)) and not hasattr(value, "__fspath__"):
            raise ValueError(f"{name}: path must be a file path, got {value!r}")


def build_fixed_mask(name, length, device=None, **params):
    """Keep mask (bool, True = query i may attend key j) of pattern `name` for `length` tokens.

    Shape (length, length); `file` may give (heads, length, length). Unknown names, unknown
    parameters and out-of-range values raise ValueError naming them.
    """
    accepted = pattern_params(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"attention mask {name!r} takes parameters {sorted(accepted)}, got unknown {unknown}")
    missing = [k for k, default in accepted.items() if default is None and k not in params and k != "layer"]
    if missing:
        raise ValueError(f"attention mask {name!r} needs parameter(s) {missing}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"attention mask {name!r}: length must be a positive integer, got {length!r}")
    for key, value in params.items():
        _check_param(name, key, value)
    if name == "fixed":
        block = params.get("block", accepted["block"])
        summary = params.get("summary", accepted["summary"])
        if summary > block:
            raise ValueError(f"fixed: summary ({summary}) must be <= block ({block})")
    return PATTERNS[name](length, device=device, **params)
