"""Files and directories that are either complete or absent: build a temporary sibling, then rename it.

Why: a run killed half-way (a long preprocessing job, Ctrl-C during an ablation) must not leave
a truncated file that a later step or a README would silently read. Standard library only, so
every layer (masks included) can use it.
"""

import contextlib
import os
import shutil
import tempfile
import uuid


def _read_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # what open() would give; mkstemp's own 0600 would outlive the rename


@contextlib.contextmanager
def atomic_output(path, mode="w", encoding="utf-8"):
    """Open a temporary file next to `path`; rename it onto `path` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.fchmod(fd, _FILE_MODE)
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


@contextlib.contextmanager
def atomic_directory(path):
    """with atomic_directory(path) as tmp: write into the empty directory tmp; it replaces `path`
    only if the block succeeds (an existing `path` is swapped out at that moment, not before)."""
    base = os.path.abspath(path).rstrip(os.sep)
    os.makedirs(os.path.dirname(base), exist_ok=True)
    tmp = f"{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"  # not mkdtemp: its 0700 would outlive the rename
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = f"{base}.old{os.getpid()}"
    if os.path.exists(path):
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
