"""All steps in one command: dump / extracted Wikipedia + books -> OUT/data-bin/shard0:shard1:...

    OUT/wikiextractor/   step 1 (only with --wiki-dump)
    OUT/clean/           step 2
    OUT/tokenizer/       step 3 (tokenizer.json, dict.txt, spm.model | vocab.txt | encoder.json+vocab.bpe)
    OUT/encoded/         step 4
    OUT/data-bin/shardK  step 5
    OUT/report.json      every step's counts

Each step skips the work a previous run already finished, so re-running the same command after
an interruption continues where it stopped.
"""

import argparse
import json
import logging
import os
import sys
import time

from .binarize import run_binarize
from .clean import add_clean_args, clean_options_from_args, run_clean
from .encode import run_encode
from .extract import run_extract
from .io_utils import read_json, write_json_atomic
from .parallel import resolve_workers
from .tokenizer import add_tokenizer_args, build_kwargs, build_tokenizer, training_files


def build_parser():
    p = argparse.ArgumentParser(
        description="Prepare BookCorpus + Wikipedia for fairseq masked-LM pre-training: extract, clean, "
        "train/adopt a tokenizer, encode and binarise into shards. Prints all counts as JSON."
    )
    src = p.add_argument_group("inputs (at least one)")
    src.add_argument(
        "--wiki-dump",
        action="append",
        default=[],
        metavar="XML_BZ2",
        help="enwiki-*-pages-articles*.xml.bz2, extracted with wikiextractor (repeatable)",
    )
    src.add_argument(
        "--wiki-extracted",
        action="append",
        default=[],
        metavar="DIR",
        help="existing wikiextractor output (repeatable)",
    )
    src.add_argument(
        "--books",
        action="append",
        default=[],
        metavar="DIR",
        help="directory of plain-text books, one per .txt (repeatable)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output root")
    ext = p.add_argument_group("extraction")
    ext.add_argument("--no-templates", action="store_true", help="wikiextractor --no-templates (faster)")
    add_clean_args(p.add_argument_group("cleaning"))
    add_tokenizer_args(p.add_argument_group("tokenizer"))
    enc = p.add_argument_group("encoding")
    enc.add_argument(
        "--max-tokens-per-line",
        type=int,
        default=126,
        help="cut longer lines (must be <= --tokens-per-sample - 2; default %(default)s)",
    )
    p.add_argument("--workers", type=int, default=0, help="processes per step (0 = all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_pipeline(args):
    if not (args.wiki_dump or args.wiki_extracted or args.books):
        raise ValueError("give at least one of --wiki-dump, --wiki-extracted, --books")
    workers = resolve_workers(args.workers)
    show = not args.no_progress
    out = args.out
    report, timings = {}, {}

    def timed(name, fn, *a, **kw):
        start = time.time()
        result = fn(*a, **kw)
        timings[name] = round(time.time() - start, 3)
        return result

    wiki_dirs = list(args.wiki_extracted)
    for i, dump in enumerate(args.wiki_dump):
        target = os.path.join(out, "wikiextractor" if len(args.wiki_dump) == 1 else f"wikiextractor{i}")
        report.setdefault("extract", {})[dump] = timed(
            f"extract{i}", run_extract, dump, target, workers, False, args.no_templates
        )
        wiki_dirs.append(target)
    clean_dir = os.path.join(out, "clean")
    manifest = timed("clean", run_clean, clean_dir, wiki_dirs, args.books, clean_options_from_args(args), workers, show)
    report["clean"] = manifest["counts"]
    tok_dir = os.path.join(out, "tokenizer")
    report["tokenizer"] = timed(
        "tokenizer", build_tokenizer, tok_dir, args.kind, training_files(clean_dir), **build_kwargs(args, workers, show)
    )
    enc_dir = os.path.join(out, "encoded")
    report["encode"] = timed("encode", run_encode, clean_dir, tok_dir, enc_dir, args.max_tokens_per_line, workers, show)
    report["binarize"] = timed("binarize", run_binarize, enc_dir, tok_dir, os.path.join(out, "data-bin"), workers)
    report["seconds"] = timings
    spec = read_json(os.path.join(tok_dir, "tokenizer.json"))
    report["fairseq_train_data"] = report["binarize"]["data"]
    report["fairseq_bpe_args"] = [
        os.path.join(tok_dir, a) if a in spec["files"].values() else a for a in spec["fairseq_args"]
    ]
    write_json_atomic(os.path.join(out, "report.json"), report)
    return report


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(name)s | %(message)s", stream=sys.stderr)
    try:
        report = run_pipeline(args)
    except (ValueError, RuntimeError) as e:
        sys.exit(f"prepare_pretraining_data: error: {e}")
    print(json.dumps(report, indent=2))
