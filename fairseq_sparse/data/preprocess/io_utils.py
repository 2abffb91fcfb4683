"""Completion markers, JSON written atomically, and bounded-memory line reading.

Why: a preprocessing run over tens of GB is interrupted sooner or later. Outputs are written
through fairseq_sparse.atomic_files (a temporary name, renamed when complete), and each finished
unit of work gets a marker recording the settings and inputs it was made from, so a re-run skips
exactly the units whose marker still matches.
"""

import bz2
import gzip
import hashlib
import json
import os

from ...atomic_files import atomic_output

MARKER_SUFFIX = ".done.json"


def write_json_atomic(path, obj):
    with atomic_output(path) as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def file_fingerprint(paths):
    """(path, size, mtime) of each input: a changed input file makes its outputs stale."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    return out


def digest_file(path, chunk=1 << 20):
    """Content hash (for small files such as a tokenizer model or dict.txt)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def marker_path(output_path):
    return output_path + MARKER_SUFFIX


def finished(output_path, config):
    """The report stored by a previous run of this unit, or None if it must be (re)done.

    A unit counts as finished only if its output exists and its marker was written with exactly
    the same `config` (settings plus input fingerprints).
    """
    marker = marker_path(output_path)
    if not (os.path.exists(output_path) and os.path.exists(marker)):
        return None
    try:
        saved = read_json(marker)
    except (OSError, ValueError):
        return None
    if saved.get("config") != json.loads(json.dumps(config)):
        return None
    return saved.get("report")


def mark_finished(output_path, config, report):
    write_json_atomic(marker_path(output_path), {"config": config, "report": report})


def open_binary(path):
    """Binary reader that transparently decompresses .bz2 / .gz files (wikiextractor -c)."""
    if path.endswith(".bz2"):
        return bz2.open(path, "rb")
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


class LineReader:
    """Iterate over the decoded lines of a file with bounded memory, never raising on content.

    - bytes that are not UTF-8 are decoded with errors="replace"; such lines are reported as
      dropped ("invalid_utf8") by the caller-visible `dropped` counter and skipped;
    - a line longer than `max_line_bytes` is consumed in pieces without ever being held whole,
      and dropped ("giant_line");
    - `bytes_read` advances as the file is consumed (for progress bars).
    """

    def __init__(self, path, max_line_bytes, dropped):
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, got {max_line_bytes}")
        self.path = path
        self.max_line_bytes = max_line_bytes
        self.dropped = dropped
        self.bytes_read = 0

    def __iter__(self):
        with open_binary(self.path) as f:
            while True:
                raw = f.readline(self.max_line_bytes + 1)
                if not raw:
                    return
                self.bytes_read += len(raw)
                if len(raw) > self.max_line_bytes and not raw.endswith(b"\n"):
                    # Giant line: skip the rest of it piece by piece.
                    while raw and not raw.endswith(b"\n"):
                        raw = f.readline(self.max_line_bytes)
                        self.bytes_read += len(raw)
                    self.dropped["giant_line"] += 1
                    continue
                text = raw.decode("utf-8", errors="replace")
                if "\ufffd" in text and b"\xef\xbf\xbd" not in raw:
                    self.dropped["invalid_utf8"] += 1
                    continue
                yield text.rstrip("\r\n")
