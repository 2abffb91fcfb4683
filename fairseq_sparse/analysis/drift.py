"""How much each head's attention changed between two checkpoints (Kovaleva et al. 2019, section 4.3).

Per head and example, the cosine similarity of the two flattened maps (real tokens only),
averaged over the examples. 1.0 means unchanged; fine-tuning changes the last layers most.
"""

import torch


def head_cosine(maps_a, maps_b):
    """(layers, heads) cosine similarity of two maps tensors (layers, heads, L, L) of one example."""
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"attention maps differ in shape: {tuple(maps_a.shape)} vs {tuple(maps_b.shape)}")
    a = maps_a.reshape(*maps_a.shape[:2], -1).double()
    b = maps_b.reshape(*maps_b.shape[:2], -1).double()
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12)


class DriftAccumulator:
    def __init__(self, layers, heads):
        self.sum = torch.zeros(layers, heads, dtype=torch.float64)
        self.sq = torch.zeros(layers, heads, dtype=torch.float64)
        self.min = torch.full((layers, heads), float("inf"), dtype=torch.float64)
        self.n = 0

    def update(self, maps_a, maps_b):
        cos = head_cosine(maps_a, maps_b).cpu()
        self.sum += cos
        self.sq += cos * cos
        self.min = torch.minimum(self.min, cos)
        self.n += 1

    def mean(self):
        return self.sum / max(self.n, 1)

    def std(self):
        mean = self.mean()
        return (self.sq / max(self.n, 1) - mean * mean).clamp(min=0).sqrt()
