"""Timing and memory helpers shared by the benchmark scripts.

Every figure is a ratio against a baseline run in the same process, interleaved with it, so
machine noise hits both alike. CPU torch keeps no allocator statistics, so forward peak
memory is measured by a dispatch mode that tracks the bytes of every live tensor storage.
"""

import statistics
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def median_times(fns, repeats=7, warmup=2, clock="wall"):
    """Run the callables round-robin; return each one's median seconds.

    clock="wall": elapsed time. clock="thread": CPU time of the calling thread, which on a
    machine shared with other jobs leaves out the time spent descheduled; it counts all the
    work only when torch runs on 1 thread (ops then run inline in the caller).
    """
    if clock not in ("wall", "thread"):
        raise ValueError(f"clock must be 'wall' or 'thread', got {clock!r}")
    now = time.perf_counter if clock == "wall" else time.thread_time
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = now()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            samples[i].append(now() - start)
    return [statistics.median(s) for s in samples]


class PeakMemory(TorchDispatchMode):
    """Peak bytes of tensor storages allocated while active.

    Storages that existed before (the inputs, passed as `existing`) don't count, also when an
    op returns a view of them.
    """

    def __init__(self, existing=()):
        super().__init__()
        self.existing = {t.untyped_storage().data_ptr() for t in existing}
        self.live = {}
        self.current = 0
        self.peak = 0

    def _release(self, ptr):
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr in self.existing:
                    continue
                if ptr in self.live:
                    self.live[ptr][1] += 1
                else:
                    self.live[ptr] = [storage.nbytes(), 1]
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                weakref.finalize(t, self._release, ptr)
        return out


def forward_peak_bytes(fn, x):
    with torch.no_grad(), PeakMemory(existing=(x,)) as meter:
        out = fn(x)
        del out
    return meter.peak
