"""Normaliser speed and memory vs torch.softmax and the `entmax` package; attention block cost.

Prints median fwd+bwd time ratios at batch 8, 12 heads, N in {128, 512}, fp32 (and fp16/bf16
on a GPU), the forward peak memory ratio, and the whole attention block (QK^T, normaliser,
AV) vs a plain softmax block and vs PyTorch's fused scaled-dot-product attention.

CPU thread modes (--modes): `one` runs with torch.set_num_threads(1); `busy` runs with torch's
default thread count while a child process spins on one core (started here, killed at the end
and never alive longer than --busy-seconds), as on a machine shared with another job.
Usage: python benchmarks/bench_normalizers.py [--lengths 128 512] [--repeats 7] [--modes one busy]
"""

import argparse
import contextlib
import subprocess
import sys

import torch
import torch.nn.functional as F
from harness import forward_peak_bytes, median_times

from fairseq_sparse.normalizers import entmax15, entmax_bisect, sparsegen_lin, sparsemax
from fairseq_sparse.normalizers.backend import backend

# learned alpha per head, as --learn-entmax-alpha trains it (initialised at 1.5, then spread)
LEARNED_ALPHA = torch.linspace(1.3, 1.7, 12).view(1, 12, 1, 1).requires_grad_()

OURS = {
    "sparsemax": sparsemax,
    "sparsegen_lin(-4)": lambda x: sparsegen_lin(x, -4.0),
    "entmax15": entmax15,
    "entmax_bisect(1.5)": lambda x: entmax_bisect(x, 1.5),
    "entmax_bisect(learned alpha/head)": lambda x: entmax_bisect(x, LEARNED_ALPHA.to(x.device)),
}


def package_versions():
    import entmax

    return {
        "sparsemax": lambda x: entmax.sparsemax(x, dim=-1),
        "sparsegen_lin(-4)": lambda x: entmax.sparsemax(x / 5.0, dim=-1),
        "entmax15": lambda x: entmax.entmax15(x, dim=-1),
        "entmax_bisect(1.5)": lambda x: entmax.entmax_bisect(x, 1.5, dim=-1),
    }


def fwd_bwd(fn, x, g):
    def run():
        x.grad = None
        LEARNED_ALPHA.grad = None
        fn(x).backward(g)

    return run


@contextlib.contextmanager
def thread_mode(mode, busy_seconds):
    """`one`: 1 torch thread. `busy`: default threads, one core kept busy by a child process."""
    default = torch.get_num_threads()
    spinner = None
    if mode == "one":
        torch.set_num_threads(1)
    else:
        loop = f"import time\nend = time.time() + {busy_seconds}\nwhile time.time() < end: pass\n"
        spinner = subprocess.Popen([sys.executable, "-c", loop])
    try:
        yield
    finally:
        torch.set_num_threads(default)
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def scores(n, device, dtype, seed=0):
    torch.manual_seed(seed)
    # q.k / sqrt(d) of unit-variance q, k has unit variance: BERT-like score scale
    return torch.randn(8, 12, n, n, device=device, dtype=dtype, requires_grad=True)


def bench_normalizers(n, device, dtype, repeats, with_package, clock="wall"):
    x = scores(n, device, dtype)
    g = torch.randn_like(x)
    softmax = lambda t: torch.softmax(t.float(), -1).to(t.dtype)
    package = package_versions() if with_package else {}
    rows = []
    for name, fn in OURS.items():
        fns = [fwd_bwd(softmax, x, g), fwd_bwd(fn, x, g)]
        if name in package:
            fns.append(fwd_bwd(package[name], x, g))
        t = median_times(fns, repeats, clock=clock)
        mem = None
        if device == "cpu":
            mem = forward_peak_bytes(fn, x.detach()) / forward_peak_bytes(softmax, x.detach())
        elif torch.cuda.is_available():
            mem = cuda_peak(fn, x.detach()) / cuda_peak(softmax, x.detach())
        rows.append((name, t[1] / t[0], t[2] / t[0] if len(t) > 2 else None, mem))
    return rows


def cuda_peak(fn, x):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with torch.no_grad():
        out = fn(x)
    torch.cuda.synchronize()
    del out
    return torch.cuda.max_memory_allocated() - base


def bench_block(n, device, dtype, repeats, clock="wall"):
    torch.manual_seed(0)
    q, k, v = (torch.randn(8, 12, n, 64, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    g = torch.randn(8, 12, n, 64, device=device, dtype=dtype)
    scale = 64**-0.5

    def block(norm):
        def run():
            for t in (q, k, v):
                t.grad = None
            p = norm(torch.matmul(q * scale, k.transpose(-1, -2)))
            torch.matmul(p, v).backward(g)

        return run

    def fused():
        for t in (q, k, v):
            t.grad = None
        F.scaled_dot_product_attention(q, k, v).backward(g)

    softmax = lambda t: torch.softmax(t.float(), -1).to(t.dtype)
    fns = [block(softmax), fused] + [block(fn) for fn in OURS.values()]
    t = median_times(fns, repeats, clock=clock)
    return [(name, t[2 + i] / t[0], t[2 + i] / t[1]) for i, name in enumerate(OURS)], t[1] / t[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-package", action="store_true", help="skip the entmax package baseline")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["one", "busy"],
        default=["one", "busy"],
        help="CPU thread modes (see above); ignored on a GPU",
    )
    parser.add_argument("--busy-seconds", type=int, default=1800, help="upper bound on the busy child's life")
    parser.add_argument(
        "--clock",
        choices=["wall", "thread"],
        default="wall",
        help="thread: CPU time of this thread (mode `one` only; robust on a shared machine)",
    )
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for mode in args.modes if device == "cpu" else ["gpu"]:
        with thread_mode(mode, args.busy_seconds) if device == "cpu" else contextlib.nullcontext():
            run(args, device, mode)


def run(args, device, mode):
    dtypes = [torch.float32] + ([torch.float16, torch.bfloat16] if device == "cuda" else [])
    busy = ", one core kept busy by another process" if mode == "busy" else ""
    clock = args.clock if mode == "one" else "wall"  # other threads' work is not in this thread's clock
    print(
        f"\n# device={device} torch={torch.__version__} threads={torch.get_num_threads()}{busy} "
        f"backend={backend()} clock={clock} batch=8 heads=12"
    )
    for dtype in dtypes:
        for n in args.lengths:
            print(f"\n## normaliser alone, fwd+bwd, N={n}, {str(dtype).replace('torch.', '')}")
            print("| normaliser | time / softmax | entmax package / softmax | fwd peak mem / softmax |")
            print("|---|---|---|---|")
            for name, r, pkg, mem in bench_normalizers(n, device, dtype, args.repeats, not args.no_package, clock):
                pkg_s = f"{pkg:.1f}x" if pkg is not None else "-"
                mem_s = f"{mem:.2f}x" if mem is not None else "-"
                print(f"| {name} | {r:.2f}x | {pkg_s} | {mem_s} |")
            rows, fused = bench_block(n, device, dtype, args.repeats, clock)
            print(
                f"\n## attention block (QK^T, normaliser, AV), fwd+bwd, N={n}, d=64; "
                f"fused SDPA / softmax block = {fused:.2f}x"
            )
            print("| normaliser | block / softmax block | block / fused SDPA |")
            print("|---|---|---|")
            for name, r, rf in rows:
                print(f"| {name} | {r:.2f}x | {rf:.2f}x |")


if __name__ == "__main__":
    main()
