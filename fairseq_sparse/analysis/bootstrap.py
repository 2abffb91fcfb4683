"""Paired bootstrap intervals over examples: is a change of the mean per-example score larger than
the sampling noise of the dev set?

Paired: every resample draws the same examples for the intact and the changed model, so the
interval is that of the mean per-example difference, and one draw serves every head.
"""

from dataclasses import dataclass

import torch


@dataclass
class Intervals:
    delta: torch.Tensor  # (K,) mean difference changed - intact over all examples
    low: torch.Tensor  # (K,) lower bound of the percentile interval
    high: torch.Tensor  # (K,) upper bound


def resample_counts(n, resamples=1000, seed=1):
    """(resamples, n) float64: how often each example is drawn in each resample (seeded)."""
    if n < 1:
        raise ValueError(f"a bootstrap needs at least one example, got {n}")
    if resamples < 1:
        raise ValueError(f"--bootstrap-resamples must be >= 1, got {resamples}")
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(n, (resamples, n), generator=generator)
    counts = torch.zeros(resamples, n, dtype=torch.float64)
    counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    return counts


def paired_intervals(base, changed, counts, confidence=0.95):
    """Mean of changed - base (per example) and its bootstrap percentile interval.

    base: (N,) per-example scores of the intact model; changed: (K, N), one row per change
    (a head or a layer disabled); counts: resample_counts(N, ...), shared by every row.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"--confidence must be in (0, 1), got {confidence}")
    diff = changed.double() - base.double().reshape(1, -1)  # K, N
    if diff.shape[1] != counts.shape[1]:
        raise ValueError(f"{diff.shape[1]} examples but the resamples draw from {counts.shape[1]}")
    means = counts @ diff.T / counts.shape[1]  # resamples, K
    tail = (1 - confidence) / 2
    q = torch.tensor([tail, 1 - tail], dtype=torch.float64)
    low, high = torch.quantile(means, q, dim=0)
    return Intervals(diff.mean(dim=1), low, high)
