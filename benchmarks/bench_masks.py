"""Cost of attention masks: each fixed pattern vs no mask, per attention path (fwd + bwd).

    python benchmarks/bench_masks.py [--lengths 128 512] [--batch 8] [--heads 12] [--dim 64]

Paths: PyTorch's fused SDPA with a bool mask (True = take part) and with an additive float
mask; manual attention (QK^T, masked_fill, normaliser, AV) with softmax and with the plugin's
sparsemax; and the learned-mask path (masked_normalize with a float 0/1 mask that also gets a
gradient). Each masked time is divided by the same path's unmasked time; all configurations of
one length are interleaved and the median of --repeats runs is taken, since this machine is
noisy. Masks are built once per length (the attention module caches them), so building is
not timed.
"""
import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

from fairseq_sparse.masks import PATTERNS, additive_mask, build_fixed_mask, masked_normalize
from fairseq_sparse.normalizers import sparsemax


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
    torch.manual_seed(0)
    shape = (args.batch, args.heads, n, args.dim)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    grad = torch.randn(shape)
    patterns = [p for p in PATTERNS if p != "file"]
    keeps = {p: build_fixed_mask(p, n) for p in patterns}
    dam_mask = (torch.rand(args.heads, n, n) > 0.5).float().requires_grad_()
    configs = {(path, "unmasked"): fn for path, fn in make_runners(q, k, v, None).items()}
    for p, keep in keeps.items():
        for path, fn in make_runners(q, k, v, keep[None, None]).items():
            configs[(path, p)] = fn
    configs[("dam_softmax", "dam(0.5)")] = dam_softmax_runner(q, k, v, dam_mask)
    leaves = [q, k, v, dam_mask]
    for fn in configs.values():  # warm-up
        time_fwd_bwd(fn, grad, leaves)
    times = {key: [] for key in configs}
    order = list(configs)
    rng = random.Random(0)
    for _ in range(args.repeats):
        rng.shuffle(order)
        for key in order:
            times[key].append(time_fwd_bwd(configs[key], grad, leaves))
    median = {key: statistics.median(t) for key, t in times.items()}
    return patterns, keeps, median


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch {args.batch} x "
          f"{args.heads} heads, d {args.dim}; median fwd+bwd of {args.repeats} interleaved runs")
    paths = ["sdpa_bool", "sdpa_additive", "manual_softmax", "manual_sparsemax"]
    for n in args.lengths:
        patterns, keeps, median = bench_length(n, args)
        print(f"\nN = {n}: unmasked time (ms): " + ", ".join(
            f"{p} {1000 * median[(p, 'unmasked')]:.1f}" for p in paths))
        print("| pattern | density | " + " | ".join(paths) + " |")
        print("|---|---|" + "---|" * len(paths))
        for p in patterns:
            ratios = " | ".join(f"{median[(path, p)] / median[(path, 'unmasked')]:.2f}x" for path in paths)
            print(f"| {p} | {float(keeps[p].float().mean()):.3f} | {ratios} |")
        dam = median[("dam_softmax", "dam(0.5)")] / median[("manual_softmax", "unmasked")]
        print(f"learned-mask path (masked_normalize softmax, float mask with gradient, density 0.5) "
              f"vs unmasked manual softmax: {dam:.2f}x")


if __name__ == "__main__":
    main()
