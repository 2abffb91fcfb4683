"""Directory outputs that appear complete or not at all."""
import contextlib
import os
import shutil


def fresh_temp_dir(dest):
    """An empty sibling directory of `dest` to build into (same filesystem, so rename is atomic)."""
    tmp = f"{os.path.abspath(dest).rstrip(os.sep)}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def replace_dir(tmp, dest):
    """Move a finished directory into place; an existing `dest` is swapped out only at the end."""
    old = f"{os.path.abspath(dest).rstrip(os.sep)}.old{os.getpid()}"
    if os.path.exists(dest):
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def building_dir(dest):
    """with building_dir(dest) as tmp: write into tmp; it becomes `dest` only if the block succeeds."""
    tmp = fresh_temp_dir(dest)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, dest)
