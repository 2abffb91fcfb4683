"""Block-sparse softmax attention for fixed and frozen masks, through PyTorch's FlexAttention.

The BlockMask is built from the dense keep mask with the same block tables as the Triton kernel
(no mask_mod evaluation over N x N), once per (mask, length, device): the tables come from
blocks.cached_block_tables, and the BlockMask without padding is cached beside them. With padding
(new every batch) only a light BlockMask over the cached tables is made per call, its mask_mod
always the same function of (keep, pad), so torch.compile sees one function. Blocks with no kept
entry are skipped. On CUDA the call goes
through torch.compile (FlexAttention's fused kernel, forward and backward); on the CPU the
uncompiled forward runs (inference only: FlexAttention has no CPU backward).
"""

import collections
import functools
import inspect
import weakref

import torch

from .blocks import cached_block_tables

FLEX_BLOCK = 128


@functools.cache
def flex_available():
    """FlexAttention with BlockMask.from_kv_blocks(seq_lengths=...) (torch >= 2.6)."""
    try:
        from torch.nn.attention.flex_attention import BlockMask
    except ImportError:
        return False
    return "seq_lengths" in inspect.signature(BlockMask.from_kv_blocks).parameters


_MASKS = collections.OrderedDict()  # (mask id and version, shape, device, block) -> (weak ref, BlockMask)


def _mask_mod(keep, pad):
    """The exact mask inside partly kept blocks: keep[h, q, k] and k not padding. One code object for every call."""
    hk = keep.shape[0]

    def mask_mod(b, h, q_idx, kv_idx):
        allowed = keep[h % hk, q_idx, kv_idx]
        if pad is not None:
            allowed = allowed & ~pad[b, kv_idx]
        return allowed

    return mask_mod


def flex_block_mask(keep, key_padding_mask=None, batch=1, block=FLEX_BLOCK):
    """A FlexAttention BlockMask for keep (H or 1, N, N) bool (True = may attend) and optional padding.

    Without padding the BlockMask is cached per (mask, length, device); with it, only the tables are.
    """
    from torch.nn.attention.flex_attention import BlockMask

    if keep.dim() != 3 or keep.dtype != torch.bool:
        raise ValueError(f"keep must be a bool mask of shape (heads or 1, N, N), got {keep.dtype} {tuple(keep.shape)}")
    n, s = keep.shape[1:]
    key = (id(keep), keep._version, tuple(keep.shape), keep.device, block)
    if key_padding_mask is None:
        hit = _MASKS.get(key)
        if hit is not None and hit[0]() is keep:
            return hit[1]
    kv_num, kv_idx, _, _ = cached_block_tables(keep, block, block)
    mask = BlockMask.from_kv_blocks(
        kv_num[None], kv_idx[None], BLOCK_SIZE=block, mask_mod=_mask_mod(keep, key_padding_mask), seq_lengths=(n, s)
    )
    if key_padding_mask is None:
        _MASKS[key] = (weakref.ref(keep), mask)
        while len(_MASKS) > 64:
            _MASKS.popitem(last=False)
    return mask


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)  # a new length recompiles once, then shapes go dynamic


def flex_softmax_attention(q, k, v, keep, key_padding_mask=None, scale=None):
    """softmax(scale * q k^T masked by keep and padding) @ v, skipping empty blocks. q, k, v: (B, H, N, D).

    A row with no allowed key gives zeros.
    """
    from torch.nn.attention.flex_attention import flex_attention

    if keep.dim() == 2:
        keep = keep[None]
    if keep.dim() == 4 and keep.shape[0] == 1:
        keep = keep[0]
    block_mask = flex_block_mask(keep.to(q.device), key_padding_mask, q.shape[0])
    fn = _compiled_flex() if q.is_cuda else flex_attention
    return fn(q, k, v, block_mask=block_mask, scale=scale)
