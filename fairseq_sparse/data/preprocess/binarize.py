"""Step 5: token files -> fairseq binary shards with `fairseq-preprocess`, one directory per shard.

    fairseq-preprocess --only-source --srcdict dict.txt --trainpref ENC/shardK.tok \
        --validpref ENC/valid.tok --destdir DATA/shardK --workers N

Every shard directory gets the same validation set, because fairseq's masked_lm reads every split
from the shard of the current epoch (`DATA/shard0:DATA/shard1:...`). fairseq-preprocess writes
into a temporary sibling of DATA/shardK, the result is opened with fairseq's own MMapIndexedDataset (proof that it
loads, and the source of the reported counts), and only then renamed to DATA/shardK.
"""

import argparse
import json
import logging
import os
import sys

import numpy as np

from ...atomic_files import atomic_directory
from .io_utils import digest_file, file_fingerprint, finished, mark_finished
from .parallel import resolve_workers
from .tokenizer import DICT

logger = logging.getLogger(__name__)

_COUNT_CHUNK = 1 << 24


def inspect_split(prefix, dictionary):
    """Sentence / token / <unk> counts of a binarised split, read through fairseq's loader."""
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    if not MMapIndexedDataset.exists(prefix):
        raise ValueError(f"fairseq-preprocess produced no {prefix}.idx/.bin")
    ds = MMapIndexedDataset(prefix)
    sizes = ds.sizes
    data = np.memmap(prefix + ".bin", dtype=ds._index.dtype, mode="r")
    unk = 0
    for start in range(0, len(data), _COUNT_CHUNK):  # chunked: never a corpus-sized temporary
        unk += int(np.count_nonzero(data[start : start + _COUNT_CHUNK] == dictionary.unk()))
    eos = len(sizes)  # fairseq-preprocess appends </s> to every line
    return {
        "lines": int(len(sizes)),
        "documents": int(np.count_nonzero(sizes == 1)),  # blank line = eos only
        "tokens": int(sizes.sum()) - eos,
        "unk_tokens": unk,
        "max_line_tokens": int(sizes.max()) - 1 if len(sizes) else 0,
    }


def fairseq_preprocess_args(dict_path, trainpref, validpref, destdir, workers):
    args = [
        "--only-source",
        "--srcdict",
        dict_path,
        "--trainpref",
        trainpref,
        "--destdir",
        destdir,
        "--workers",
        str(workers),
        "--dataset-impl",
        "mmap",
    ]
    if validpref:
        args += ["--validpref", validpref]
    return args


def run_fairseq_preprocess(argv):
    """fairseq-preprocess ARGV, in this process (saves a fairseq import per shard)."""
    from fairseq import options
    from fairseq_cli import preprocess

    args = options.get_preprocessing_parser().parse_args(argv)
    handlers = list(preprocess.logger.handlers)
    try:
        preprocess.main(args)
    except Exception as e:  # fairseq reports bad input with assertions and bare exceptions
        raise RuntimeError(f"fairseq-preprocess {' '.join(argv)} failed: {type(e).__name__}: {e}") from e
    finally:  # main() adds a FileHandler to destdir/preprocess.log on every call
        for h in preprocess.logger.handlers:
            if h not in handlers:
                preprocess.logger.removeHandler(h)
                h.close()


def binarize_shard(train_tok, valid_tok, dict_path, dest, workers):
    with atomic_directory(dest) as tmp:
        argv = fairseq_preprocess_args(dict_path, train_tok, valid_tok, tmp, workers)
        logger.info("fairseq-preprocess %s", " ".join(argv))
        run_fairseq_preprocess(argv)
        from fairseq.data import Dictionary

        dictionary = Dictionary.load(os.path.join(tmp, "dict.txt"))
        report = {"dictionary_size": len(dictionary), "train": inspect_split(os.path.join(tmp, "train"), dictionary)}
        if valid_tok:
            report["valid"] = inspect_split(os.path.join(tmp, "valid"), dictionary)
    return report


def run_binarize(encoded_dir, tokenizer_dir, out_dir, workers=0):
    workers = resolve_workers(workers)
    dict_path = os.path.join(tokenizer_dir, DICT)
    if not os.path.exists(dict_path):
        raise ValueError(f"{tokenizer_dir!r} has no {DICT}: run the tokenizer step first")
    names = (
        sorted(
            (n for n in os.listdir(encoded_dir) if n.startswith("shard") and n.endswith(".tok")),
            key=lambda n: int(n[len("shard") : -len(".tok")]),
        )
        if os.path.isdir(encoded_dir)
        else []
    )
    if not names:
        raise ValueError(f"no encoded shards (shardK.tok) in {encoded_dir!r}: run the encode step first")
    valid_tok = os.path.join(encoded_dir, "valid.tok")
    if not os.path.exists(valid_tok) or os.path.getsize(valid_tok) == 0:
        logger.warning(
            "no validation text in %s: shards get no valid split (train with --disable-validation "
            "or raise --valid-fraction)",
            encoded_dir,
        )
        valid_tok = None
    os.makedirs(out_dir, exist_ok=True)
    report = {"shards": {}, "data": None}
    dests = []
    for name in names:
        dest = os.path.join(out_dir, name[: -len(".tok")])
        dests.append(dest)
        inputs = [os.path.join(encoded_dir, name)] + ([valid_tok] if valid_tok else [])
        config = {"dict": digest_file(dict_path), "inputs": file_fingerprint(inputs)}
        saved = finished(dest, config)
        if saved is None:
            saved_now = binarize_shard(inputs[0], valid_tok, dict_path, dest, workers)
            mark_finished(dest, config, saved_now)
            report["shards"][os.path.basename(dest)] = {**saved_now, "reused": False}
        else:
            logger.info("binarize %s: finished earlier, skipped", dest)
            report["shards"][os.path.basename(dest)] = {**saved, "reused": True}
    report["data"] = ":".join(dests)
    report["train_tokens"] = sum(s["train"]["tokens"] for s in report["shards"].values())
    return report


def build_parser():
    p = argparse.ArgumentParser(
        description="Binarise every encoded shard with fairseq-preprocess into DATA/shardK (usable as "
        "fairseq-train DATA/shard0:DATA/shard1:...). Prints counts as JSON."
    )
    p.add_argument("--encoded", required=True, metavar="DIR", help="output directory of the encode step")
    p.add_argument("--tokenizer", required=True, metavar="DIR", help="directory holding dict.txt")
    p.add_argument("--out", required=True, metavar="DIR", help="data-bin output directory")
    p.add_argument("--workers", type=int, default=0, help="fairseq-preprocess --workers (0 = all cores)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(name)s | %(message)s", stream=sys.stderr)
    try:
        report = run_binarize(args.encoded, args.tokenizer, args.out, args.workers)
    except (ValueError, RuntimeError) as e:
        sys.exit(f"binarize: error: {e}")
    print(json.dumps({"step": "binarize", **report}, indent=2))
