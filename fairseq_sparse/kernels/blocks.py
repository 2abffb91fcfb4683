"""Block tables of a keep mask (which key blocks each query block touches), built once per mask and tile size.

A frozen or fixed mask is the same tensor for every layer and every step, so its tables (an N x N scan and
a sort) are built once per (mask, tile size, device) and reused; an in-place change of the mask (its
version counter) or a new tensor builds them again. Pure torch; no host sync.
"""

import collections
import math
import weakref

import torch

_CACHE = collections.OrderedDict()  # key -> (weak reference to the mask, tables)
_CACHE_SIZE = 64  # masks (per layer, per length) a run keeps tables for


def block_tables(keep, block_m, block_n):
    """Which key blocks each query block touches (and the transpose), from a (H or 1, T, S) keep mask.

    Returns kv_num (Hk, n_qb) int32, kv_idx (Hk, n_qb, n_kb) int32 (the touched key blocks
    first, ascending), q_num (Hk, n_kb), q_idx (Hk, n_kb, n_qb).
    """
    if keep.dim() != 3 or keep.dtype != torch.bool:
        raise ValueError(f"keep must be a bool mask of shape (heads or 1, T, S), got {keep.dtype} {tuple(keep.shape)}")
    hk, t, s = keep.shape
    n_qb, n_kb = math.ceil(t / block_m), math.ceil(s / block_n)
    padded = keep.new_zeros((hk, n_qb * block_m, n_kb * block_n))
    padded[:, :t, :s] = keep
    blocks = padded.view(hk, n_qb, block_m, n_kb, block_n).any(dim=4).any(dim=2)  # (Hk, n_qb, n_kb)

    def table(b):
        num = b.sum(dim=-1, dtype=torch.int32)
        idx = torch.argsort((~b).to(torch.int8), dim=-1, stable=True).to(torch.int32)
        return num.contiguous(), idx.contiguous()

    kv_num, kv_idx = table(blocks)
    q_num, q_idx = table(blocks.transpose(1, 2))
    return kv_num, kv_idx, q_num, q_idx


def cached_block_tables(keep, block_m, block_n):
    """block_tables(keep, block_m, block_n), built once per (mask tensor and version, shape, tiles, device)."""
    key = (id(keep), keep._version, tuple(keep.shape), keep.device, block_m, block_n)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is keep:
        _CACHE.move_to_end(key)
        return hit[1]
    tables = block_tables(keep, block_m, block_n)
    _CACHE[key] = (weakref.ref(keep), tables)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return tables
