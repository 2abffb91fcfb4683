"""Attention density: the one definition of how sparse an attention map is.

Counts, not ratios, so that they add up over batches, layers and workers (fairseq sums a
criterion's logging outputs); the density is nonzero / pairs, the mean support nonzero / rows.
"""

from typing import NamedTuple

import torch


class DensityCounts(NamedTuple):
    nonzero: torch.Tensor  # (heads,) non-zero weights in real (query, key) pairs
    pairs: torch.Tensor  # (heads,) real (query, key) pairs
    rows: torch.Tensor  # (heads,) real query rows


@torch.no_grad()
def attention_density_counts(support, padding_mask=None):
    """Per-head counts from the support size of every query row of a self-attention map.

    support: (batch, heads, tokens), the number of keys with non-zero weight in each row, e.g.
    ``(probs > 0).sum(-1)`` (padded keys always have weight 0); padding_mask: (batch, tokens),
    True at padding (queries and keys are the same tokens). Padded query rows are not counted.
    """
    b, h, t = support.shape
    if padding_mask is None:
        real = torch.ones(b, t, dtype=torch.float64, device=support.device)
    else:
        real = (~padding_mask).to(torch.float64)
    nonzero = torch.einsum("bht,bt->h", support.to(torch.float64), real)
    lengths = real.sum(dim=1)
    pairs = lengths.square().sum().expand(h).clone()
    rows = lengths.sum().expand(h).clone()
    return DensityCounts(nonzero, pairs, rows)


def support_sizes(probs):
    """(batch, heads, queries): keys with non-zero weight per row of (batch, heads, queries, keys)."""
    return (probs > 0).sum(dim=-1)
