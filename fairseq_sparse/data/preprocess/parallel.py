"""Ordered parallel map over a stream, with a bound on the work held in memory.

`multiprocessing.Pool.imap` feeds its input iterator from a background thread as fast as it
can, so on a corpus larger than memory it would read the whole corpus into the task queue
before the workers catch up. `bounded_imap` blocks that feeder after `max_in_flight` items.
"""

import multiprocessing
import os
import threading


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers):
    """--workers 0 (or None) means every available core."""
    if workers is None or workers == 0:
        return available_cores()
    if workers < 0:
        raise ValueError(f"--workers must be >= 0 (0 = all cores), got {workers}")
    return workers


class _Gate:
    """Iterator wrapper that waits for a free slot before handing out each item."""

    def __init__(self, iterable, slots):
        self._it = iter(iterable)
        self._slots = threading.Semaphore(slots)
        self._closed = False

    def __iter__(self):
        return self

    def __next__(self):
        self._slots.acquire()
        if self._closed:
            raise StopIteration
        return next(self._it)

    def release(self):
        self._slots.release()

    def close(self):
        """Unblock the pool's feeder thread when the consumer stops early (else Pool exit hangs)."""
        self._closed = True
        self._slots.release()


def bounded_imap(fn, iterable, workers, initializer=None, initargs=(), max_in_flight=None):
    """Yield fn(item) for each item, in order, computed by `workers` processes.

    workers == 1 runs in this process (no pickling; simplest to debug). At most
    `max_in_flight` (default 4 x workers) items are read ahead of the consumer.
    """
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        for item in iterable:
            yield fn(item)
        return
    gate = _Gate(iterable, max_in_flight or 4 * workers)
    with multiprocessing.Pool(workers, initializer=initializer, initargs=initargs) as pool:
        try:
            for result in pool.imap(fn, gate, chunksize=1):
                gate.release()
                yield result
        finally:
            gate.close()
