"""How every part of the GPU check (benchmarks/gpu_check.py) times a path and records a failure:
median times with CUDA events, fwd+bwd / forward-only step closures, and the list of failed paths
that makes the check exit with status 1. A module of its own so that the parts in gpu_check.py and
gpu_check_models.py share one FAILURES list.
"""

import statistics
import sys
import time

import torch

FAILURES = []  # (part, what failed): reported at the end, exit status 1


def timed(fns, repeats, warmup):
    """Median seconds of each callable, run round-robin; CUDA events on a GPU."""
    cuda = torch.cuda.is_available()
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                samples[i].append(start.elapsed_time(end) / 1000)
            else:
                t = time.perf_counter()
                fn()
                samples[i].append(time.perf_counter() - t)
    return [statistics.median(s) for s in samples]


def fwd_bwd(run, leaves, grad):
    def step():
        for t in leaves:
            t.grad = None
        run().backward(grad)

    return step


def forward_only(run):
    def step():
        with torch.no_grad():
            run()

    return step


def failed(part, what, exc):
    """Report a failure now (the rest still runs) and remember it for the exit status."""
    FAILURES.append((part, what))
    print(f"  ! {part}: {what}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}")
    sys.stdout.flush()
