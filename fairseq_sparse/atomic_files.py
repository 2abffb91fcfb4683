"""Files that are either complete or absent: write a temporary sibling, then rename it.

Why: a run killed half-way (a long preprocessing job, Ctrl-C during an ablation) must not leave
a truncated file that a later step or a README would silently read. Standard library only, so
every layer (masks included) can use it.
"""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_output(path, mode="w", encoding="utf-8"):
    """Open a temporary file next to `path`; rename it onto `path` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        if "b" in mode:
            f = open(tmp, mode)
        else:
            f = open(tmp, mode, encoding=encoding, newline="\n")
        with f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
