"""Step 2: raw documents -> cleaned, de-duplicated, sharded text (one sentence per line).

Output layout under OUT (the format fairseq's masked_lm expects with
`--sample-break-mode complete_doc`: one sentence per line, a blank line after every document):

    OUT/partNNNNN/shardK.txt   training documents of shard K read from this part's input files
    OUT/partNNNNN/valid.txt    held-out documents (the same validation set goes into every shard)
    OUT/partNNNNN/hashes.u64   fingerprints of the kept documents (global de-duplication)
    OUT/partNNNNN.done.json    completion marker: settings, input fingerprints, counts
    OUT/manifest.json          parts, shard count, total counts (read by the encode step)

A *part* is a group of input files of about --part-size-mb; it is the unit that is skipped on a
re-run. Documents go to shard `hash % num_shards`, so every shard mixes Wikipedia and books;
validation documents are chosen by another slice of the same hash, so the split is
deterministic and independent of file order.
"""

import argparse
import array
import contextlib
import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass

from ...atomic_files import atomic_output
from .counts import StepCounts
from .io_utils import file_fingerprint, finished, mark_finished, write_json_atomic
from .markup import clean_text, clean_wiki_markup, document_hash
from .parallel import bounded_imap, resolve_workers
from .progress import progress_bar
from .sentences import chunk_words, split_sentences
from .sources import BOOKS, WIKIPEDIA, DocumentReader, list_inputs

logger = logging.getLogger(__name__)

VALID_BUCKETS = 1_000_000
MANIFEST = "manifest.json"


@dataclass
class CleanOptions:
    num_shards: int = 1
    valid_fraction: float = 0.001
    wiki_min_line_words: int = 4
    books_min_line_words: int = 1
    min_doc_words: int = 20
    min_doc_sentences: int = 1
    max_sentence_words: int = 200
    max_line_bytes: int = 1_000_000
    max_doc_chars: int = 20_000_000
    book_lines: str = "paragraph"
    part_size_mb: float = 256.0

    def validate(self):
        checks = [
            (self.num_shards >= 1, "--num-shards must be >= 1"),
            (0.0 <= self.valid_fraction < 1.0, "--valid-fraction must be in [0, 1)"),
            (self.wiki_min_line_words >= 0 and self.books_min_line_words >= 0, "--*-min-line-words must be >= 0"),
            (self.min_doc_words >= 0 and self.min_doc_sentences >= 0, "--min-doc-* must be >= 0"),
            (self.max_sentence_words >= 1, "--max-sentence-words must be >= 1"),
            (self.max_line_bytes >= 1, "--max-line-bytes must be >= 1"),
            (self.max_doc_chars >= 1, "--max-doc-chars must be >= 1"),
            (self.book_lines in ("paragraph", "wrapped"), "--book-lines must be 'paragraph' or 'wrapped'"),
            (self.part_size_mb > 0, "--part-size-mb must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{message} (got {asdict(self)})")


# ---- work done in the worker processes ---------------------------------------------------
_OPTIONS = None


def _init_worker(options):
    global _OPTIONS
    _OPTIONS = options


def clean_document(doc, options, counts):
    """Cleaned sentences of one RawDocument, or None if the document is dropped (reason counted)."""
    wiki = doc.source == WIKIPEDIA
    min_line_words = options.wiki_min_line_words if wiki else options.books_min_line_words
    sentences, words = [], 0
    for paragraph in doc.paragraphs:
        text = clean_wiki_markup(paragraph) if wiki else clean_text(paragraph)
        if not text:
            counts.dropped_lines["empty_after_cleaning"] += 1
            continue
        n_words = len(text.split())
        if n_words < min_line_words:
            counts.dropped_lines["short_line"] += 1
            continue
        for sentence in split_sentences(text):
            pieces = chunk_words(sentence, options.max_sentence_words)
            if len(pieces) > 1:
                counts.totals["long_sentences_split"] += 1
            sentences.extend(pieces)
        words += n_words
    if not sentences:
        counts.dropped_documents["empty"] += 1
        return None
    if words < options.min_doc_words or len(sentences) < options.min_doc_sentences:
        counts.dropped_documents["too_short"] += 1
        return None
    return sentences


def _clean_batch(batch):
    counts = StepCounts()
    results = []
    for doc in batch:
        sentences = clean_document(doc, _OPTIONS, counts)
        if sentences is None:
            results.append(None)
        else:
            results.append((doc.source, document_hash(sentences), sentences))
    return results, counts


# ---- the step -------------------------------------------------------------------------------
def plan_parts(inputs, part_size_mb):
    """Group the (sorted) input files into consecutive parts of about part_size_mb each."""
    limit = part_size_mb * 1024 * 1024
    parts, current, size = [], [], 0
    for item in inputs:
        current.append(item)
        size += item.size
        if size >= limit:
            parts.append(current)
            current, size = [], 0
    if current:
        parts.append(current)
    return parts


def _batches(readers, max_docs=256, max_chars=1 << 20):
    batch, chars = [], 0
    for reader in readers:
        for doc in reader:
            batch.append(doc)
            chars += doc.chars
            if len(batch) >= max_docs or chars >= max_chars:
                yield batch
                batch, chars = [], 0
    if batch:
        yield batch


def _read_hashes(path):
    values = array.array("Q")
    with open(path, "rb") as f:
        values.frombytes(f.read())
    return values


def _clean_part(index, part, part_dir, options, seen, workers, show_progress):
    """Clean one part into part_dir (written atomically file by file); return its counts."""
    counts = StepCounts()
    # The readers run in the pool's feeder thread: they get their own counters, merged at the end.
    read_counts = StepCounts()
    readers = [
        DocumentReader(item, read_counts, options.max_line_bytes, options.max_doc_chars, options.book_lines)
        for item in part
    ]
    valid_threshold = int(round(options.valid_fraction * VALID_BUCKETS))
    kept_hashes = array.array("Q")
    total_bytes = sum(item.size for item in part)
    with contextlib.ExitStack() as stack:
        shards = [
            stack.enter_context(atomic_output(os.path.join(part_dir, f"shard{k}.txt")))
            for k in range(options.num_shards)
        ]
        valid = stack.enter_context(atomic_output(os.path.join(part_dir, "valid.txt")))
        bar = stack.enter_context(progress_bar(total_bytes, f"clean part {index}", show_progress))
        done_bytes = 0
        results = bounded_imap(_clean_batch, _batches(readers), workers, initializer=_init_worker, initargs=(options,))
        for docs, batch_counts in results:
            counts.add(batch_counts)
            for result in docs:
                counts.totals["documents_read"] += 1
                if result is None:
                    continue
                source, h, sentences = result
                if h in seen:
                    counts.dropped_documents["duplicate"] += 1
                    continue
                seen.add(h)
                kept_hashes.append(h)
                is_valid = (h >> 32) % VALID_BUCKETS < valid_threshold
                out = valid if is_valid else shards[h % options.num_shards]
                out.write("\n".join(sentences))
                out.write("\n\n")
                counts.totals["valid_documents" if is_valid else "train_documents"] += 1
                counts.totals[f"documents_kept_{source}"] += 1
                counts.totals["sentences"] += len(sentences)
                counts.totals["words"] += sum(len(s.split()) for s in sentences)
            now = sum(r.bytes_read for r in readers)
            bar.update(now - done_bytes)
            done_bytes = now
        with atomic_output(os.path.join(part_dir, "hashes.u64"), "wb") as f:
            kept_hashes.tofile(f)
    counts.add(read_counts)
    counts.totals["documents_kept"] = counts.totals["train_documents"] + counts.totals["valid_documents"]
    counts.totals["input_bytes"] += total_bytes
    return counts


def run_clean(out_dir, wiki_dirs=(), book_dirs=(), options=None, workers=0, show_progress=True):
    """Run the cleaning step; return the manifest (parts, shard count, total counts)."""
    options = options or CleanOptions()
    options.validate()
    workers = resolve_workers(workers)
    inputs = []
    for d in wiki_dirs:
        inputs.extend(list_inputs(WIKIPEDIA, d))
    for d in book_dirs:
        inputs.extend(list_inputs(BOOKS, d))
    if not inputs:
        raise ValueError(
            f"no input files found (wikipedia dirs: {list(wiki_dirs)}, book dirs: {list(book_dirs)}; "
            "books must be *.txt files)"
        )
    os.makedirs(out_dir, exist_ok=True)
    parts = plan_parts(inputs, options.part_size_mb)
    total = StepCounts()
    seen = set()
    chain_intact = True  # a part is only reusable if every part before it was reused too
    manifest_parts = []
    for index, part in enumerate(parts):
        part_dir = os.path.join(out_dir, f"part{index:05d}")
        config = {"options": asdict(options), "inputs": file_fingerprint([p.path for p in part])}
        report = finished(part_dir, config) if chain_intact else None
        if report is not None:
            logger.info("part %d: finished earlier, skipped", index)
            seen.update(_read_hashes(os.path.join(part_dir, "hashes.u64")))
            counts = StepCounts.from_dict(report)
        else:
            chain_intact = False
            if os.path.isdir(part_dir):
                shutil.rmtree(part_dir)
            counts = _clean_part(index, part, part_dir, options, seen, workers, show_progress)
            mark_finished(part_dir, config, counts.to_dict())
        total.add(counts)
        manifest_parts.append(
            {"dir": os.path.basename(part_dir), "counts": counts.to_dict(), "reused": report is not None}
        )
    manifest = {
        "num_shards": options.num_shards,
        "parts": manifest_parts,
        "counts": total.to_dict(),
        "options": asdict(options),
    }
    write_json_atomic(os.path.join(out_dir, MANIFEST), manifest)
    return manifest


def shard_files(clean_dir, shard):
    """The cleaned text files that make up training shard `shard` (or "valid"), in order."""
    manifest_path = os.path.join(clean_dir, MANIFEST)
    if not os.path.exists(manifest_path):
        raise ValueError(f"{clean_dir!r} has no {MANIFEST}: run the clean step first")
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    name = "valid.txt" if shard == "valid" else f"shard{shard}.txt"
    if shard != "valid" and not 0 <= shard < manifest["num_shards"]:
        raise ValueError(f"shard {shard} out of range: {clean_dir!r} has {manifest['num_shards']} shards")
    return [os.path.join(clean_dir, p["dir"], name) for p in manifest["parts"]], manifest["num_shards"]


def add_clean_args(p):
    o = CleanOptions()
    p.add_argument(
        "--num-shards",
        type=int,
        default=o.num_shards,
        help="number of training shards (fairseq loads DATA/shard0:DATA/shard1:... one per epoch)",
    )
    p.add_argument(
        "--valid-fraction",
        type=float,
        default=o.valid_fraction,
        help="fraction of documents held out for validation (default %(default)s)",
    )
    p.add_argument(
        "--wiki-min-line-words",
        type=int,
        default=o.wiki_min_line_words,
        help="drop Wikipedia paragraphs with fewer words (section headings); default %(default)s",
    )
    p.add_argument(
        "--books-min-line-words",
        type=int,
        default=o.books_min_line_words,
        help="same for books (dialogue lines are short); default %(default)s",
    )
    p.add_argument(
        "--min-doc-words",
        type=int,
        default=o.min_doc_words,
        help="drop documents with fewer words after cleaning (default %(default)s)",
    )
    p.add_argument(
        "--min-doc-sentences",
        type=int,
        default=o.min_doc_sentences,
        help="drop documents with fewer sentences (default %(default)s)",
    )
    p.add_argument(
        "--max-sentence-words",
        type=int,
        default=o.max_sentence_words,
        help="cut longer run-on sentences into pieces of this many words (default %(default)s)",
    )
    p.add_argument(
        "--max-line-bytes",
        type=int,
        default=o.max_line_bytes,
        help="drop input lines longer than this (never read whole; default %(default)s)",
    )
    p.add_argument(
        "--max-doc-chars",
        type=int,
        default=o.max_doc_chars,
        help="cut longer documents into several (bounds memory; default %(default)s)",
    )
    p.add_argument(
        "--book-lines",
        choices=["paragraph", "wrapped"],
        default=o.book_lines,
        help="books: every line is a paragraph, or lines are hard-wrapped up to a blank line",
    )
    p.add_argument(
        "--part-size-mb",
        type=float,
        default=o.part_size_mb,
        help="input MB per part, the unit a re-run skips when finished (default %(default)s)",
    )


def clean_options_from_args(args):
    return CleanOptions(**{k: getattr(args, k) for k in asdict(CleanOptions())})


def build_parser():
    p = argparse.ArgumentParser(
        description="Clean wikiextractor output and/or plain-text books into sharded, de-duplicated "
        "text with one sentence per line and a blank line between documents. Prints counts as JSON."
    )
    p.add_argument(
        "--wiki-extracted",
        action="append",
        default=[],
        metavar="DIR",
        help="wikiextractor output directory (<doc> or --json format; repeatable)",
    )
    p.add_argument(
        "--books",
        action="append",
        default=[],
        metavar="DIR",
        help="directory of plain-text books, one book per .txt file (repeatable)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_clean_args(p)
    add_common_args(p)
    return p


def add_common_args(p):
    p.add_argument("--workers", type=int, default=0, help="worker processes (0 = all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(name)s | %(message)s", stream=sys.stderr)
    if not args.wiki_extracted and not args.books:
        sys.exit("clean: error: give at least one --wiki-extracted DIR or --books DIR")
    try:
        manifest = run_clean(
            args.out, args.wiki_extracted, args.books, clean_options_from_args(args), args.workers, not args.no_progress
        )
    except ValueError as e:
        sys.exit(f"clean: error: {e}")
    print(json.dumps({"step": "clean", **manifest["counts"]}, indent=2))
