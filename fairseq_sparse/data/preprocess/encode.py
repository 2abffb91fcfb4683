"""Step 4: cleaned text -> space-separated subword tokens, in parallel, one output per shard.

Blank lines (document boundaries) pass through unchanged. A line that encodes to more than
--max-tokens-per-line tokens is cut into several lines: masked_lm packs whole lines into blocks
of `--tokens-per-sample - 1` tokens (eos included), and a longer line would become a block
longer than the model's positions. The default (126) fits `--tokens-per-sample 128`, BERT's
phase-1 length, and therefore every longer one too.

Outputs: OUT/shardK.tok (+ .done.json marker) for every clean shard, and OUT/valid.tok.
"""

import argparse
import json
import logging
import os
import sys

from ...atomic_files import atomic_output
from .clean import shard_files
from .counts import StepCounts
from .io_utils import digest_file, file_fingerprint, finished, mark_finished
from .parallel import bounded_imap, resolve_workers
from .progress import progress_bar
from .tokenizer import SPEC, load_encoder

logger = logging.getLogger(__name__)

_ENCODER = None
_MAX_TOKENS = None


def _init_worker(tokenizer_dir, max_tokens):
    global _ENCODER, _MAX_TOKENS
    _ENCODER = load_encoder(tokenizer_dir)
    _MAX_TOKENS = max_tokens


def encode_lines(encoder, lines, max_tokens, counts):
    """Encoded output lines for `lines` (blank input lines stay blank: document boundaries)."""
    out = []
    for line in lines:
        if not line.strip():
            out.append("")
            counts.totals["documents"] += 1
            continue
        tokens = encoder.encode(line)
        if not tokens:
            counts.dropped_lines["no_tokens"] += 1
            continue
        counts.totals["sentences"] += 1
        counts.totals["tokens"] += len(tokens)
        if encoder.unk is not None:
            counts.totals["unk_tokens"] += sum(1 for t in tokens if t == encoder.unk)
        if len(tokens) > max_tokens:
            counts.totals["lines_split"] += 1
        for i in range(0, len(tokens), max_tokens):
            out.append(" ".join(tokens[i : i + max_tokens]))
            counts.totals["output_lines"] += 1
    return out


def _encode_batch(lines):
    counts = StepCounts()
    n_bytes = sum(len(line.encode("utf-8", errors="replace")) + 1 for line in lines)  # progress bar
    return encode_lines(_ENCODER, lines, _MAX_TOKENS, counts), counts, n_bytes


def _line_batches(files, max_lines=2000, max_chars=1 << 20):
    batch, chars = [], 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
            for line in f:
                line = line.rstrip("\n")
                batch.append(line)
                chars += len(line)
                if len(batch) >= max_lines or chars >= max_chars:
                    yield batch
                    batch, chars = [], 0
    if batch:
        yield batch


def encode_unit(files, out_path, tokenizer_dir, max_tokens, workers, show_progress, desc):
    counts = StepCounts()
    total = sum(os.path.getsize(f) for f in files)
    with atomic_output(out_path) as out, progress_bar(total, desc, show_progress) as bar:
        results = bounded_imap(
            _encode_batch,
            _line_batches(files),
            workers,
            initializer=_init_worker,
            initargs=(tokenizer_dir, max_tokens),
        )
        for lines, batch_counts, n_bytes in results:
            counts.add(batch_counts)
            for line in lines:
                out.write(line + "\n")
            bar.update(n_bytes)
    return counts


def run_encode(clean_dir, tokenizer_dir, out_dir, max_tokens_per_line=126, workers=0, show_progress=True):
    """Encode every shard and the validation text; return {unit: counts} plus totals."""
    if max_tokens_per_line < 1:
        raise ValueError(f"--max-tokens-per-line must be >= 1, got {max_tokens_per_line}")
    workers = resolve_workers(workers)
    spec_path = os.path.join(tokenizer_dir, SPEC)
    if not os.path.exists(spec_path):
        raise ValueError(f"{tokenizer_dir!r} has no {SPEC}: run the tokenizer step first")
    load_encoder(tokenizer_dir)  # fail here, clearly, rather than inside a worker
    tokenizer_digest = sorted(
        digest_file(os.path.join(tokenizer_dir, name))
        for name in os.listdir(tokenizer_dir)
        if name in ("tokenizer.json", "spm.model", "vocab.txt", "encoder.json", "vocab.bpe")
    )
    _, num_shards = shard_files(clean_dir, 0)
    os.makedirs(out_dir, exist_ok=True)
    units = list(range(num_shards)) + ["valid"]
    report = {"units": {}}
    total = StepCounts()
    for unit in units:
        files, _ = shard_files(clean_dir, unit)
        name = "valid.tok" if unit == "valid" else f"shard{unit}.tok"
        out_path = os.path.join(out_dir, name)
        config = {
            "tokenizer": tokenizer_digest,
            "max_tokens_per_line": max_tokens_per_line,
            "inputs": file_fingerprint(files),
        }
        saved = finished(out_path, config)
        if saved is not None:
            logger.info("encode %s: finished earlier, skipped", name)
            counts = StepCounts.from_dict(saved)
        else:
            counts = encode_unit(
                files, out_path, tokenizer_dir, max_tokens_per_line, workers, show_progress, f"encode {name}"
            )
            mark_finished(out_path, config, counts.to_dict())
        report["units"][name] = {**counts.to_dict(), "reused": saved is not None}
        if unit != "valid":
            total.add(counts)
    report["train_totals"] = total.to_dict()
    return report


def build_parser():
    p = argparse.ArgumentParser(
        description="Encode the cleaned shards with the tokenizer, in parallel over the cores, into "
        "space-separated token files for fairseq-preprocess. Prints counts as JSON."
    )
    p.add_argument("--clean", required=True, metavar="DIR", help="output directory of the clean step")
    p.add_argument("--tokenizer", required=True, metavar="DIR", help="output directory of the tokenizer step")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--max-tokens-per-line",
        type=int,
        default=126,
        help="cut longer lines (must be <= --tokens-per-sample - 2 of every training phase)",
    )
    p.add_argument("--workers", type=int, default=0, help="worker processes (0 = all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(name)s | %(message)s", stream=sys.stderr)
    try:
        report = run_encode(
            args.clean, args.tokenizer, args.out, args.max_tokens_per_line, args.workers, not args.no_progress
        )
    except ValueError as e:
        sys.exit(f"encode: error: {e}")
    print(json.dumps({"step": "encode", **report}, indent=2))
