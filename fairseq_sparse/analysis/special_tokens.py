"""Attention to special tokens (Kovaleva et al. 2019, section 5).

Per head and example, every key's attention is averaged over the query rows; a key type's score
is the maximum of that average over the keys of the type ([CLS], [SEP], punctuation, and the
remaining tokens for reference). Scores are then averaged over the examples that contain the
type. Separately, the last layer's [CLS] row is split into the mass it puts on each key type.
"""

import torch

from .examples import CLS, TOKEN_TYPES


class SpecialTokenAttention:
    def __init__(self, layers, heads):
        n = len(TOKEN_TYPES)
        self.sums = torch.zeros(n, layers, heads, dtype=torch.float64)
        self.counts = torch.zeros(n, dtype=torch.float64)
        self.cls_row = torch.zeros(heads, n, dtype=torch.float64)
        self.cls_rows = 0

    def update(self, maps, types):
        """maps (layers, heads, L, L) of one example; types (L,) codes from TokenTyper."""
        types = types.to(maps.device)
        received = maps.double().mean(dim=-2)  # layers, heads, L: mean over query rows
        for code in range(len(TOKEN_TYPES)):
            keys = types == code
            if keys.any():
                self.sums[code] += received[..., keys].max(dim=-1).values.cpu()
                self.counts[code] += 1
        if types[0] == CLS:
            row = maps[-1, :, 0, :].double()  # heads, L
            for code in range(len(TOKEN_TYPES)):
                self.cls_row[:, code] += (row * (types == code)).sum(-1).cpu()
            self.cls_rows += 1

    def scores(self):
        """{type: (layers, heads) mean over examples having that type, NaN if none had it}."""
        out = {}
        for code, name in enumerate(TOKEN_TYPES):
            out[name] = (
                self.sums[code] / self.counts[code]
                if self.counts[code]
                else torch.full_like(self.sums[code], float("nan"))
            )
        return out

    def last_layer_cls_row(self):
        """{type: (heads,) mean mass the last layer's [CLS] query puts on keys of that type}."""
        mean = self.cls_row / max(self.cls_rows, 1)
        return {name: mean[:, code] for code, name in enumerate(TOKEN_TYPES)}

    def examples_with(self):
        return {name: int(self.counts[code]) for code, name in enumerate(TOKEN_TYPES)}
