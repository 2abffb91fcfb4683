"""Cost of attention masks: each fixed pattern vs no mask, per attention path (fwd + bwd).

    python benchmarks/bench_masks.py [--lengths 128 512] [--batch 8] [--heads 12] [--dim 64]

Paths: PyTorch's fused SDPA with a bool mask (True = take part) and with an additive float
mask; manual attention (QK^T, masked_fill, normaliser, AV) with softmax and with the plugin's
sparsemax; and the learned-mask path (masked_normalize with a float 0/1 mask that also gets a
gradient). Each masked run is timed right after (or before, alternating) the same path's
unmasked run and the median of the --repeats ratios is printed: pairing cancels most of the
drift of a shared, noisy machine. Masks are built once per length (the attention module
caches them), so building is not timed.
"""

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

from fairseq_sparse.masks import PATTERNS, additive_mask, build_fixed_mask, masked_normalize
from fairseq_sparse.normalizers import sparsemax

PATHS = ["sdpa_bool", "sdpa_additive", "manual_softmax", "manual_sparsemax"]


def manual_attention(q, k, v, keep, normalise):
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.matmul(normalise(scores), v)


def make_runners(q, k, v, keep):
    """path -> callable returning the attention output under `keep` (None: unmasked)."""
    additive = None if keep is None else additive_mask(keep, q.dtype)
    return {
        "sdpa_bool": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
        "sdpa_additive": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=additive),
        "manual_softmax": lambda: manual_attention(q, k, v, keep, lambda s: torch.softmax(s, dim=-1)),
        "manual_sparsemax": lambda: manual_attention(q, k, v, keep, sparsemax),
    }


def dam_softmax_runner(q, k, v, dam_mask):
    """The learned-mask path: float 0/1 mask through masked_normalize (gradient to the mask too)."""

    def run():
        scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        return torch.matmul(masked_normalize(scores, dam_mask, "softmax"), v)

    return run


def time_fwd_bwd(fn, grad, leaves):
    for t in leaves:
        t.grad = None
    start = time.perf_counter()
    fn().backward(grad)
    return time.perf_counter() - start


def bench_length(n, args):
    """Median over repeats of (masked time / unmasked time), each pair timed back to back."""
    torch.manual_seed(0)
    shape = (args.batch, args.heads, n, args.dim)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    grad = torch.randn(shape)
    dam_mask = (torch.rand(args.heads, n, n) > 0.5).float().requires_grad_()
    leaves = [q, k, v, dam_mask]
    patterns = [p for p in PATTERNS if p != "file"]
    keeps = {p: build_fixed_mask(p, n) for p in patterns}
    baseline = make_runners(q, k, v, None)
    pairs = {}
    for path in args.paths:
        for p, keep in keeps.items():
            pairs[(path, p)] = (baseline[path], make_runners(q, k, v, keep[None, None])[path])
    pairs[("dam_softmax", "dam(0.5)")] = (baseline["manual_softmax"], dam_softmax_runner(q, k, v, dam_mask))
    for base_fn, masked_fn in pairs.values():  # warm-up
        time_fwd_bwd(base_fn, grad, leaves)
        time_fwd_bwd(masked_fn, grad, leaves)
    ratios = {key: [] for key in pairs}
    base_times = {path: [] for path in args.paths + ["dam_softmax"]}
    order = list(pairs)
    rng = random.Random(0)
    for rep in range(args.repeats):
        rng.shuffle(order)
        for key in order:
            base_fn, masked_fn = pairs[key]
            if rep % 2:  # alternate which of the pair runs first
                t_masked = time_fwd_bwd(masked_fn, grad, leaves)
                t_base = time_fwd_bwd(base_fn, grad, leaves)
            else:
                t_base = time_fwd_bwd(base_fn, grad, leaves)
                t_masked = time_fwd_bwd(masked_fn, grad, leaves)
            ratios[key].append(t_masked / t_base)
            base_times[key[0]].append(t_base)
    return (
        patterns,
        keeps,
        {k: statistics.median(v) for k, v in ratios.items()},
        {k: statistics.median(v) for k, v in base_times.items() if v},
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paths", nargs="+", default=PATHS, choices=PATHS)
    args = parser.parse_args(argv)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch {args.batch} x "
        f"{args.heads} heads, d {args.dim}; fwd+bwd, median over {args.repeats} runs of masked / unmasked "
        "timed back to back"
    )
    for n in args.lengths:
        patterns, keeps, ratio, base = bench_length(n, args)
        print(f"\nN = {n}: unmasked fwd+bwd (ms): " + ", ".join(f"{p} {1000 * base[p]:.1f}" for p in args.paths))
        print("| pattern | density | " + " | ".join(args.paths) + " |")
        print("|---|---|" + "---|" * len(args.paths))
        for p in patterns:
            cells = " | ".join(f"{ratio[(path, p)]:.2f}x" for path in args.paths)
            print(f"| {p} | {float(keeps[p].float().mean()):.3f} | {cells} |")
        print(
            "learned-mask path (masked_normalize softmax, float 0/1 mask with gradient, density 0.5) vs "
            f"unmasked manual softmax: {ratio[('dam_softmax', 'dam(0.5)')]:.2f}x"
        )


if __name__ == "__main__":
    main()
