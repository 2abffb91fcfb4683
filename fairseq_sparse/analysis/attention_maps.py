"""Per-example attention maps, streamed, and the sparsity of those maps.

Maps of 1000 examples x 144 heads do not fit in memory at length 128, so analyses consume them
one example at a time. Each map is cut to the example's real tokens: padded keys are exactly 0
and padded queries are meaningless.
"""

import torch
from tqdm.auto import tqdm

from ..modules.attention_stats import attention_density_counts, support_sizes


@torch.no_grad()
def iterate_maps(model, batches, pad, device="cpu", progress=True, desc="attention maps"):
    """Yield (index, tokens (L,), maps (layers, heads, L, L) float32 on the CPU) per example."""
    for batch in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
        tokens = batch.src_tokens
        per_layer = model.extract_attention(tokens.to(device))
        stacked = torch.stack([m.float().cpu() for m in per_layer], dim=1)  # batch, layers, heads, T, T
        lengths = tokens.ne(pad).sum(dim=1).tolist()
        for b, index in enumerate(batch.indices):
            n = lengths[b]
            yield index, tokens[b, :n], stacked[b, :, :, :n, :n]


class SparsityStats:
    """Exact zeros of the maps: density and support size per head (sparsemax/entmax make real zeros).

    density      non-zero weights / all (query, key) pairs of real tokens
    mean_support mean number of keys with non-zero weight per query row

    Both are the counts of modules/attention_stats.py (the one density definition, also the
    training log's and the fine-tune results'), summed over examples.
    """

    def __init__(self, layers, heads):
        shape = (layers, heads)
        self.nonzero = torch.zeros(shape, dtype=torch.float64)
        self.pairs = 0
        self.rows = 0
        self.single = torch.zeros(shape, dtype=torch.float64)
        self.min_support = torch.full(shape, float("inf"), dtype=torch.float64)
        self.max_support = torch.zeros(shape, dtype=torch.float64)
        self.relative = torch.zeros(shape, dtype=torch.float64)

    def update(self, maps):
        """maps (layers, heads, L, L) of one example, cut to its real tokens."""
        layers, heads, n = maps.shape[:3]
        support = support_sizes(maps).double()  # layers, heads, L
        counts = attention_density_counts(support.reshape(1, layers * heads, n))  # every (layer, head) a "head"
        self.nonzero += counts.nonzero.reshape(layers, heads).cpu()
        self.pairs += int(counts.pairs[0])
        self.rows += int(counts.rows[0])
        self.single += (support == 1).sum(dim=-1)
        self.min_support = torch.minimum(self.min_support, support.min(dim=-1).values)
        self.max_support = torch.maximum(self.max_support, support.max(dim=-1).values)
        self.relative += (support / n).sum(dim=-1)

    def density(self):
        return self.nonzero / max(self.pairs, 1)

    def to_json(self):
        density = self.density()
        rows = max(self.rows, 1)
        return {
            "definition": "density = non-zero weights / (query, key) pairs of real tokens; support = keys with "
            "non-zero weight per query row; exact zeros only",
            "overall_density": float(self.nonzero.sum() / max(self.pairs * density.numel(), 1)),
            "per_layer_density": density.mean(dim=1),
            "density": density,
            "mean_support": self.nonzero / rows,
            "mean_relative_support": self.relative / rows,
            "min_support": self.min_support,
            "max_support": self.max_support,
            "share_rows_single_key": self.single / rows,
            "query_rows": self.rows,
        }
