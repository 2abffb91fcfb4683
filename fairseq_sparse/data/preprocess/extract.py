"""Step 1: a Wikipedia dump (enwiki-*-pages-articles*.xml.bz2) -> wikiextractor output.

Runs `python -m wikiextractor.WikiExtractor` (PyPI `wikiextractor`, 3.1.0 works on Python 3.11)
into a temporary sibling of OUT and renames it to OUT when it finishes (atomic_directory), so an
interrupted extraction is never mistaken for a finished one. If wikiextractor is not installed,
extract elsewhere and give the output directory to the clean step with --wiki-extracted.
"""

import argparse
import importlib.util
import json
import logging
import os
import subprocess
import sys

from ...atomic_files import atomic_directory
from .io_utils import file_fingerprint, finished, mark_finished

logger = logging.getLogger(__name__)


def wikiextractor_available():
    return importlib.util.find_spec("wikiextractor") is not None


def count_extracted(directory):
    """Files, documents and bytes in a wikiextractor output tree (both output formats)."""
    files = docs = size = 0
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            files += 1
            size += os.path.getsize(path)
            if name.endswith((".bz2", ".gz")):
                continue  # compressed (-c): counted by the clean step instead
            with open(path, "rb") as f:
                for line in f:
                    if line.startswith(b"<doc ") or line.startswith(b"{"):
                        docs += 1
    return {"files": files, "documents": docs, "bytes": size}


def run_extract(dump, out_dir, processes=1, json_output=False, no_templates=False, bytes_per_file="1M"):
    if not os.path.isfile(dump):
        raise ValueError(f"Wikipedia dump {dump!r} does not exist (expected enwiki-*-pages-articles*.xml.bz2)")
    if not wikiextractor_available():
        raise ValueError(
            "wikiextractor is not installed: `pip install wikiextractor` (3.1.0 verified on Python 3.11), "
            "or extract the dump elsewhere and pass the output with --wiki-extracted"
        )
    if processes < 1:
        raise ValueError(f"--processes must be >= 1, got {processes}")
    config = {
        "dump": file_fingerprint([dump]),
        "json": json_output,
        "no_templates": no_templates,
        "bytes_per_file": bytes_per_file,
    }
    saved = finished(out_dir, config)
    if saved is not None:
        logger.info("extract: %s finished earlier, skipped", out_dir)
        return {**saved, "reused": True}
    with atomic_directory(out_dir) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "wikiextractor.WikiExtractor",
            dump,
            "-o",
            tmp,
            "-b",
            bytes_per_file,
            "--processes",
            str(processes),
            "-q",
        ]
        if json_output:
            cmd.append("--json")
        if no_templates:
            cmd.append("--no-templates")
        logger.info("running: %s", " ".join(cmd))
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"wikiextractor failed (rc={proc.returncode}):\n{proc.stdout[-4000:]}")
        os.makedirs(tmp, exist_ok=True)  # a dump with no articles produces no output directory
        report = count_extracted(tmp)
    mark_finished(out_dir, config, report)
    return {**report, "reused": False}


def build_parser():
    p = argparse.ArgumentParser(
        description="Extract article text from a Wikipedia XML dump with wikiextractor. Prints counts as JSON."
    )
    p.add_argument("dump", help="enwiki-*-pages-articles*.xml.bz2")
    p.add_argument("--out", required=True, metavar="DIR", help="wikiextractor output directory")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="wikiextractor processes")
    p.add_argument("--json", action="store_true", help="wikiextractor --json output (one object per line)")
    p.add_argument(
        "--no-templates",
        action="store_true",
        help="skip template expansion (much faster, loses text produced by templates)",
    )
    p.add_argument("--bytes-per-file", default="1M", help="wikiextractor -b (default %(default)s)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(name)s | %(message)s", stream=sys.stderr)
    try:
        report = run_extract(args.dump, args.out, args.processes, args.json, args.no_templates, args.bytes_per_file)
    except (ValueError, RuntimeError) as e:
        sys.exit(f"extract: error: {e}")
    print(json.dumps({"step": "extract", **report}, indent=2))
