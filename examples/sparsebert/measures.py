"""What reproduce.py measures: the unigram baseline, the masks' agreement, masks matched in density
(random, window, BigBird), the diagonal's keep-probability curve, and mean +- sd over seeds."""

import itertools
import os
import re

import numpy as np
import torch

from fairseq_sparse.atomic_files import atomic_output
from fairseq_sparse.masks import build_fixed_mask


def token_counts(data_dir, split):
    """Counts of every token id in a binarised fairseq split (all positions: the MLM task masks any)."""
    from fairseq.data import Dictionary, data_utils

    dictionary = Dictionary.load(os.path.join(data_dir, "dict.txt"))
    dataset = data_utils.load_indexed_dataset(os.path.join(data_dir, split), dictionary)
    if dataset is None:
        raise FileNotFoundError(f"no binarised split {split!r} in {data_dir}")
    counts = np.zeros(len(dictionary), dtype=np.int64)
    for i in range(len(dataset)):
        counts += np.bincount(dataset[i].numpy(), minlength=len(dictionary))
    return counts


def unigram_bits(data_dir):
    """Bits per masked token of the best model that knows only word frequencies.

    fairseq's masked_lm picks the masked positions uniformly, so the masked targets follow the
    valid tokens' distribution. `cross_entropy_train_unigram`: valid tokens under the train
    unigram distribution (add-one smoothed), the baseline an MLM must beat;
    `valid_entropy`: the plug-in entropy of the valid tokens themselves (a lower, optimistic one).
    """
    train, valid = token_counts(data_dir, "train"), token_counts(data_dir, "valid")
    p_train = (train + 1) / (train + 1).sum()
    p_valid = valid / valid.sum()
    seen = valid > 0
    return {
        "cross_entropy_train_unigram": round(float(-(p_valid[seen] * np.log2(p_train[seen])).sum()), 4),
        "valid_entropy": round(float(-(p_valid[seen] * np.log2(p_valid[seen])).sum()), 4),
        "valid_tokens": int(valid.sum()),
    }


def kept_distances(mask):
    """Per head, the sorted distances d >= 0 (0 = the diagonal) a structured (heads, n, n) mask keeps (row 0)."""
    return [[int(d) for d in np.flatnonzero(head[0])] for head in mask]


def jaccard(a, b):
    a, b = set(a), set(b)
    return 1.0 if not a | b else len(a & b) / len(a | b)


def agreement(per_seed, length, draws=1000, seed=0):
    """Mean per-head Jaccard of the kept distance sets over seed pairs, vs random sets of the same sizes.

    The heads are the adapted model's in every seed, so head h is compared with head h. Chance:
    each head's set replaced by a uniform random subset of {0..n-1} of the same size (Monte Carlo).
    """
    pairs = list(itertools.combinations(range(len(per_seed)), 2))
    if not pairs:
        return None
    rng = np.random.default_rng(seed)
    observed = float(np.mean([jaccard(x, y) for i, j in pairs for x, y in zip(per_seed[i], per_seed[j])]))
    distances = np.arange(length)
    chance = []
    for _ in range(draws):
        random_sets = [[rng.choice(distances, len(h), replace=False) for h in heads] for heads in per_seed]
        chance.append(np.mean([jaccard(x, y) for i, j in pairs for x, y in zip(random_sets[i], random_sets[j])]))
    return {
        "mean_head_jaccard": round(observed, 4),
        "chance_head_jaccard": round(float(np.mean(chance)), 4),
        "chance_p95": round(float(np.quantile(chance, 0.95)), 4),
    }


def random_like(mask, seed):
    """A random structured (heads, n, n) mask with each head's density as close to `mask`'s as distances allow.

    Distances are taken in a random order until the head keeps as many query-key pairs as the
    learned head (distance d holds n entries for d = 0, 2 (n - d) otherwise), so a learned head
    of far distances is matched in density, not in the number of distances.
    """
    rng = np.random.default_rng(seed)
    n = mask.shape[-1]
    distance = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    entries = np.bincount(distance.ravel(), minlength=n)
    out = np.zeros(mask.shape, dtype=bool)
    for h in range(mask.shape[0]):
        target, kept, total = int(mask[h].sum()), [], 0
        for d in rng.permutation(n):
            if abs(total + entries[d] - target) < abs(total - target):
                kept.append(d)
                total += entries[d]
        out[h] = np.isin(distance, kept)
    return out


# The fixed patterns offered at about a learned mask's density: a plain local window (Longformer
# without global tokens) and BigBird (block window 1, one global token, random blocks).
PATTERN_CANDIDATES = {
    "window": [("longformer", {"window": w, "num_global": 0}) for w in range(1, 64)],
    "bigbird": [
        ("bigbird", {"block": b, "window": 1, "num_global": 1, "random_blocks": r, "seed": 0})
        for b in (2, 4, 6, 8, 12, 16, 24, 32)
        for r in (0, 1, 2, 3)
    ],
}
PATTERN_FLAGS = {
    "window": "--attn-mask-window",
    "num_global": "--attn-mask-global",
    "block": "--attn-mask-block",
    "random_blocks": "--attn-mask-random-blocks",
    "seed": "--attn-mask-seed",
}


def matched_pattern(kind, density, length):
    """(pattern, params, its density at `length`) of `kind` nearest to `density`, with its fairseq flags."""
    best = min(
        PATTERN_CANDIDATES[kind],
        key=lambda c: abs(float(build_fixed_mask(c[0], length, **c[1]).float().mean()) - density),
    )
    name, params = best
    flags = ["--attn-mask", name]
    for key, value in params.items():
        flags += [PATTERN_FLAGS[key], value] if key in PATTERN_FLAGS else []
    return {
        "pattern": name,
        "params": params,
        "flags": flags,
        "density": round(float(build_fixed_mask(name, length, **params).float().mean()), 4),
    }


def keep_probability_curve(save_dir, length):
    """Keep probability sigmoid(logit) per distance, mean over heads, at every saved update."""
    points = sorted(
        (int(m.group(1)), os.path.join(save_dir, name))
        for name in os.listdir(save_dir)
        if (m := re.fullmatch(r"checkpoint_\d+_(\d+)\.pt", name))
    )
    if not points:
        raise FileNotFoundError(f"no checkpoint_*_<update>.pt in {save_dir}")
    probs = np.array([keep_probabilities(path, length) for _, path in points])  # (snapshots, distances)
    curve = {"updates": [u for u, _ in points], "keep_probability": np.round(probs, 6).tolist()}
    curve.update(diagonal_ranks(probs[0], probs[-1]))
    return curve


def keep_probabilities(checkpoint, length):
    """Keep probability sigmoid(scale x dam_logits) per distance d < length, mean over heads, of a checkpoint."""
    from fairseq_sparse.checkpoint_reader import read_checkpoint

    state = read_checkpoint(checkpoint)["model"]
    logits = next(v for k, v in state.items() if k.endswith("dam_logits"))
    scale = float(next(v for k, v in state.items() if k.endswith("dam_logit_scale")))
    return torch.sigmoid(scale * logits.double())[0, :, :length].mean(0).numpy()


def diagonal_ranks(first, last):
    """Where the diagonal (d = 0) ends among all distances, from unrounded keep probabilities."""
    drop = first - last
    return {
        "final_rank_of_diagonal": int((last < last[0]).sum()) + 1,  # 1 = lowest of all distances
        "diagonal_drop_rank": int((drop > drop[0]).sum()) + 1,  # 1 = the diagonal fell most
        "final_keep_probability_d0_d1_d2_rest": [
            round(float(x), 6) for x in (last[0], last[1], last[2], last[3:].mean())
        ],
    }


def draw_curve(curve, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = np.array(curve["keep_probability"])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for d in range(min(5, probs.shape[1])):
        ax.plot(
            curve["updates"],
            probs[:, d],
            marker="o",
            ms=3,
            label=f"d={d}" + (" (diagonal)" if d == 0 else ""),
            lw=2.5 if d == 0 else 1.2,
        )
    ax.plot(curve["updates"], probs[:, 5:].mean(1), "k--", label=f"d=5..{probs.shape[1] - 1} (mean)")
    ax.set_xlabel("update")
    ax.set_ylabel("keep probability (mean over heads)")
    low, high = float(probs.min()), float(probs.max())
    if high - low < 0.05:  # the additive form's keep probabilities move by ~1e-3: zoom in, or every line is 0.5
        pad = max(high - low, 1e-4) * 0.2
        ax.set_ylim(low - pad, high + pad)
        ax.set_ylabel("keep probability (mean over heads; zoomed)")
    else:
        ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_output(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
