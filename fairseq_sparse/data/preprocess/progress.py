"""tqdm progress bars on stderr (stdout carries the JSON report), off when not wanted."""

import contextlib
import sys

from tqdm import tqdm


@contextlib.contextmanager
def progress_bar(total, desc, enabled=True, unit="B"):
    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        file=sys.stderr,
        disable=not enabled,
        mininterval=1.0,
    )
    try:
        yield bar
    finally:
        bar.close()
