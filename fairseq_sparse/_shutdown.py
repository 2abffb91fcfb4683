"""Stop fairseq's data-prefetch threads before the interpreter finalises (registered by __init__).

Why: fairseq's BufferedIterator (--data-buffer-size, default 10) reads batches ahead in a daemon
`BackgroundConsumer` thread that nothing stops. When training ends (at once with
--disable-validation) that thread is still collating batches inside torch's C++ code, which
releases the GIL. Python 3.11 ends daemon threads that try to take the GIL back during
finalisation with pthread_exit(); its forced unwind runs into torch's noexcept
pybind11::gil_scoped_release destructor, and the process dies with "terminate called without an
active exception" (SIGABRT, rc 134) after "done training". Seen on the CPU with OMP_NUM_THREADS=1.

An atexit callback runs before finalisation, while the GIL still works: ask each live consumer to
stop after its current batch (its own `count >= _max_len` check), empty its queue so its put()
returns, and join it. fairseq itself is not patched; a consumer still busy after the timeout is
left as before.
"""

import queue
import threading
import time


def stop_fairseq_prefetch_threads(timeout_s=30.0):
    """Returns how many consumers were stopped (0 where fairseq was never imported)."""
    import sys

    iterators = sys.modules.get("fairseq.data.iterators")
    consumer_cls = getattr(iterators, "BackgroundConsumer", None)
    if consumer_cls is None:
        return 0
    consumers = [t for t in threading.enumerate() if isinstance(t, consumer_cls) and t.is_alive()]
    deadline = time.monotonic() + timeout_s
    stopped = 0
    for consumer in consumers:
        consumer._max_len = 0  # its loop breaks after the next put(), then puts the end sentinel
        while consumer.is_alive() and time.monotonic() < deadline:
            try:
                while True:
                    consumer._queue.get_nowait()
            except queue.Empty:
                pass
            consumer.join(0.05)
        stopped += not consumer.is_alive()
    return stopped
