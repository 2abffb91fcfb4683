"""Step 3: the subword tokeniser and the fairseq dictionary (dict.txt).

Three kinds, all ending in OUT/tokenizer.json (what the encode step loads) and OUT/dict.txt:
- sentencepiece: trained here (unigram or bpe, --vocab-size) on a reservoir sample of the
  cleaned training text; fairseq side: `--bpe sentencepiece --sentencepiece-model spm.model`.
- wordpiece: a given BERT vocab.txt, encoded by data/wordpiece.py (BERT's tokenizer on Hugging
  Face `tokenizers`, no `transformers`); fairseq side: `--bpe bert_wordpiece --bpe-vocab-file vocab.txt`.
  dict.txt is the vocab without BERT's five specials, in vocab order (what
  fairseq-sparse-convert-bert writes, so a converted BERT checkpoint can continue pre-training).
- gpt2: RoBERTa's encoder.json + vocab.bpe, encoded with fairseq's gpt2_bpe_utils (tokens are the
  BPE ids as text, as in fairseq's RoBERTa recipe); dict.txt is RoBERTa's own if --gpt2-dict is
  given, else every BPE id in id order. fairseq side: `--bpe gpt2`.
Dictionary counts are the token frequencies in the sample (0 for tokens it lacks): fairseq only
uses them for `--freq-weighted-replacement`.
"""

import argparse
import collections
import json
import logging
import os
import random
import shutil
import sys

from ...atomic_files import atomic_output
from .clean import shard_files
from .io_utils import digest_file, file_fingerprint, finished, mark_finished, read_json
from .parallel import resolve_workers
from .progress import progress_bar

logger = logging.getLogger(__name__)

SPEC = "tokenizer.json"
DICT = "dict.txt"
SAMPLE = "sample.txt"
KINDS = ("sentencepiece", "wordpiece", "gpt2")
# Symbols fairseq's Dictionary / masked_lm create themselves; a dict.txt line with one would clash.
FAIRSEQ_SPECIALS = frozenset(("<s>", "<pad>", "</s>", "<unk>", "<mask>"))
_GPT2_CACHE_LIMIT = 500_000


# ---- encoders (used by the encode step, one instance per worker process) --------------------
class SentencePieceEncoder:
    unk = "<unk>"

    def __init__(self, model_path):
        import sentencepiece

        self.sp = sentencepiece.SentencePieceProcessor(model_file=model_path)
        self.unk = self.sp.id_to_piece(self.sp.unk_id())

    def encode(self, line):
        # Via ids, so an unknown character comes out as "<unk>" (counted here) rather than as its
        # surface form, which fairseq-preprocess would map to <unk> silently.
        return [self.sp.id_to_piece(i) for i in self.sp.encode(line)]


class WordPieceEncoder:
    unk = "<unk>"

    def __init__(self, vocab_path, lowercase, strip_accents=None):
        from fairseq_sparse.data.bert_wordpiece_bpe import BERT_TO_FAIRSEQ
        from fairseq_sparse.data.wordpiece import WordPieceTokenizer

        self.tokenizer = WordPieceTokenizer(vocab_path, lowercase=lowercase, strip_accents=strip_accents)
        self.rename = BERT_TO_FAIRSEQ

    def encode(self, line):
        # BERT's special tokens appear under fairseq's names, as `--bpe bert_wordpiece` writes them.
        return [self.rename.get(t, t) for t in self.tokenizer.tokenize(line)]


class GPT2Encoder:
    unk = None  # byte-level BPE has no unknown token

    def __init__(self, encoder_json, vocab_bpe):
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        self.bpe = get_encoder(encoder_json, vocab_bpe)

    def encode(self, line):
        if len(self.bpe.cache) > _GPT2_CACHE_LIMIT:  # fairseq's cache grows without bound
            self.bpe.cache.clear()
        return [str(i) for i in self.bpe.encode(line)]


def load_encoder(tokenizer_dir):
    spec = read_spec(tokenizer_dir)
    files = {k: os.path.join(tokenizer_dir, v) for k, v in spec["files"].items()}
    if spec["kind"] == "sentencepiece":
        return SentencePieceEncoder(files["model"])
    if spec["kind"] == "wordpiece":
        return WordPieceEncoder(files["vocab"], spec["lowercase"], spec.get("strip_accents"))
    return GPT2Encoder(files["encoder_json"], files["vocab_bpe"])


def read_spec(tokenizer_dir):
    path = os.path.join(tokenizer_dir, SPEC)
    if not os.path.exists(path):
        raise ValueError(f"{tokenizer_dir!r} has no {SPEC}: run the tokenizer step first")
    spec = read_json(path)
    if spec.get("kind") not in KINDS:
        raise ValueError(f"{path}: unknown tokenizer kind {spec.get('kind')!r}, expected one of {KINDS}")
    return spec


# ---- sampling -------------------------------------------------------------------------------
def sample_sentences(files, out_path, max_sentences, seed, show_progress=True):
    """Reservoir-sample up to max_sentences non-empty lines of `files` (streamed) into out_path."""
    rng = random.Random(seed)
    reservoir, seen = [], 0
    total = sum(os.path.getsize(f) for f in files)
    with progress_bar(total, "sample", show_progress) as bar:
        for path in files:
            with open(path, "rb") as f:
                for raw in f:
                    bar.update(len(raw))
                    line = raw.decode("utf-8", errors="replace").strip()
                    if not line:
                        continue
                    seen += 1
                    if len(reservoir) < max_sentences:
                        reservoir.append(line)
                    else:
                        j = rng.randrange(seen)
                        if j < max_sentences:
                            reservoir[j] = line
    if not reservoir:
        raise ValueError(f"no text to sample from in {files}: is the cleaned corpus empty?")
    with atomic_output(out_path) as f:
        for line in reservoir:
            f.write(line + "\n")
    return {"sample_sentences": len(reservoir), "sentences_seen": seen}


def _count_tokens(encoder, sample_path):
    counts = collections.Counter()
    with open(sample_path, encoding="utf-8") as f:
        for line in f:
            counts.update(encoder.encode(line.rstrip("\n")))
    return counts


def write_dict(path, tokens, counts):
    """fairseq dict.txt: 'token count' per line, order = embedding row order after the specials."""
    seen = set()
    with atomic_output(path) as f:
        for tok in tokens:
            if not tok or any(c.isspace() for c in tok):
                raise ValueError(f"vocabulary token {tok!r} is empty or contains whitespace")
            if tok in FAIRSEQ_SPECIALS or tok in seen:
                continue
            seen.add(tok)
            f.write(f"{tok} {counts.get(tok, 0)}\n")
    return len(seen)


# ---- the three kinds --------------------------------------------------------------------------
def _train_sentencepiece(
    out_dir, sample_path, vocab_size, model_type, character_coverage, byte_fallback, seed, workers
):
    import sentencepiece

    prefix = os.path.join(out_dir, ".spm-training")
    sentencepiece.set_random_generator_seed(seed)
    try:
        sentencepiece.SentencePieceTrainer.train(
            input=sample_path,
            model_prefix=prefix,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            byte_fallback=byte_fallback,
            num_threads=max(1, workers),
            input_sentence_size=0,  # the sample is already the right size
            minloglevel=1,
        )
    except RuntimeError as e:
        raise ValueError(f"sentencepiece training failed for --vocab-size {vocab_size}: {e}") from None
    os.replace(prefix + ".model", os.path.join(out_dir, "spm.model"))
    os.replace(prefix + ".vocab", os.path.join(out_dir, "spm.vocab"))
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(out_dir, "spm.model"))
    # Control symbols (<s>, </s>) and <unk> are fairseq's own; byte pieces stay (byte fallback).
    tokens = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i))]
    return {"model": "spm.model", "vocab": "spm.vocab"}, tokens


def _adopt_wordpiece(out_dir, vocab_path):
    from fairseq_sparse.data.wordpiece import SPECIAL_TOKENS, load_vocab

    tokens = load_vocab(vocab_path)
    missing = [t for t in ("[UNK]",) if t not in tokens]
    if missing:
        raise ValueError(f"{vocab_path!r} is not a BERT vocab.txt: it lacks {missing}")
    shutil.copyfile(vocab_path, os.path.join(out_dir, "vocab.txt"))
    return {"vocab": "vocab.txt"}, [t for t in tokens if t not in SPECIAL_TOKENS]


def _adopt_gpt2(out_dir, encoder_json, vocab_bpe, gpt2_dict):
    with open(encoder_json, encoding="utf-8") as f:
        try:
            encoder = json.load(f)
        except ValueError as e:
            raise ValueError(f"{encoder_json!r} is not GPT-2's encoder.json: {e}") from None
    if not isinstance(encoder, dict) or not encoder:
        raise ValueError(f"{encoder_json!r} is not GPT-2's encoder.json (expected a token -> id object)")
    with open(vocab_bpe, encoding="utf-8") as f:
        first = f.readline()
    if not first.startswith("#version"):
        raise ValueError(f"{vocab_bpe!r} is not GPT-2's vocab.bpe (first line should be '#version: ...')")
    shutil.copyfile(encoder_json, os.path.join(out_dir, "encoder.json"))
    shutil.copyfile(vocab_bpe, os.path.join(out_dir, "vocab.bpe"))
    files = {"encoder_json": "encoder.json", "vocab_bpe": "vocab.bpe"}
    if gpt2_dict:
        with open(gpt2_dict, encoding="utf-8") as f:
            tokens = [line.split(" ")[0] for line in f if line.strip()]
        return files, tokens
    return files, [str(i) for i in sorted(set(encoder.values()))]


def build_tokenizer(
    out_dir,
    kind,
    clean_files,
    *,
    vocab_size=32000,
    model_type="unigram",
    character_coverage=0.9999,
    byte_fallback=False,
    wordpiece_vocab=None,
    cased=False,
    encoder_json=None,
    vocab_bpe=None,
    gpt2_dict=None,
    sample_sentences_n=1_000_000,
    seed=1,
    workers=1,
    show_progress=True,
):
    """Build tokenizer.json + dict.txt in out_dir (skipped if an identical earlier run finished)."""
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}, expected one of {KINDS}")
    given = {"sentencepiece": [], "wordpiece": [wordpiece_vocab], "gpt2": [encoder_json, vocab_bpe]}[kind]
    if any(not p for p in given):
        need = {"wordpiece": "--wordpiece-vocab vocab.txt", "gpt2": "--gpt2-encoder-json and --gpt2-vocab-bpe"}
        raise ValueError(f"--kind {kind} needs {need[kind]}")
    for p in given + ([gpt2_dict] if gpt2_dict else []):
        if not os.path.isfile(p):
            raise ValueError(f"tokenizer file {p!r} does not exist")
    if kind == "sentencepiece" and vocab_size < 8:
        raise ValueError(f"--vocab-size must be >= 8, got {vocab_size}")
    if kind == "sentencepiece" and model_type not in ("unigram", "bpe"):
        raise ValueError(f"--model-type must be 'unigram' or 'bpe', got {model_type!r}")
    if sample_sentences_n < 1:
        raise ValueError(f"--sample-sentences must be >= 1, got {sample_sentences_n}")
    config = {
        "kind": kind,
        "vocab_size": vocab_size if kind == "sentencepiece" else None,
        "model_type": model_type if kind == "sentencepiece" else None,
        "character_coverage": character_coverage if kind == "sentencepiece" else None,
        "byte_fallback": byte_fallback if kind == "sentencepiece" else None,
        "cased": cased if kind == "wordpiece" else None,
        "given": [digest_file(p) for p in given + ([gpt2_dict] if gpt2_dict else [])],
        "sample_sentences": sample_sentences_n,
        "seed": seed,
        "inputs": file_fingerprint(clean_files),
    }
    spec_path = os.path.join(out_dir, SPEC)
    report = finished(spec_path, config)
    if report is not None:
        logger.info("tokenizer: finished earlier, skipped")
        return report
    os.makedirs(out_dir, exist_ok=True)
    sample_path = os.path.join(out_dir, SAMPLE)
    report = sample_sentences(clean_files, sample_path, sample_sentences_n, seed, show_progress)
    if kind == "sentencepiece":
        files, tokens = _train_sentencepiece(
            out_dir, sample_path, vocab_size, model_type, character_coverage, byte_fallback, seed, workers
        )
        spec = {
            "kind": kind,
            "files": files,
            "fairseq_args": ["--bpe", "sentencepiece", "--sentencepiece-model", "spm.model"],
        }
    elif kind == "wordpiece":
        files, tokens = _adopt_wordpiece(out_dir, wordpiece_vocab)
        spec = {
            "kind": kind,
            "files": files,
            "lowercase": not cased,
            "fairseq_args": ["--bpe", "bert_wordpiece", "--bpe-vocab-file", "vocab.txt"]
            + ([] if not cased else ["--bpe-cased"]),
        }
    else:
        files, tokens = _adopt_gpt2(out_dir, encoder_json, vocab_bpe, gpt2_dict)
        spec = {
            "kind": kind,
            "files": files,
            "fairseq_args": ["--bpe", "gpt2", "--gpt2-encoder-json", "encoder.json", "--gpt2-vocab-bpe", "vocab.bpe"],
        }
    spec["dict"] = DICT
    with atomic_output(spec_path) as f:  # written first: load_encoder reads it
        json.dump(spec, f, indent=2)
    counts = _count_tokens(load_encoder(out_dir), sample_path)
    dict_size = write_dict(os.path.join(out_dir, DICT), tokens, counts)
    report.update(
        {
            "kind": kind,
            "dict_size": dict_size,
            "sample_tokens": sum(counts.values()),
            "sample_unk_tokens": counts.get("<unk>", 0),
            "sample_token_types": len(counts),
        }
    )
    mark_finished(spec_path, config, report)
    return report


def add_tokenizer_args(p):
    p.add_argument("--kind", choices=KINDS, default="sentencepiece", help="tokenizer kind (default %(default)s)")
    p.add_argument("--vocab-size", type=int, default=32000, help="sentencepiece vocabulary size")
    p.add_argument("--model-type", choices=["unigram", "bpe"], default="unigram", help="sentencepiece model type")
    p.add_argument("--character-coverage", type=float, default=0.9999, help="sentencepiece character coverage")
    p.add_argument("--byte-fallback", action="store_true", help="sentencepiece: bytes instead of <unk> for rare chars")
    p.add_argument("--wordpiece-vocab", metavar="VOCAB_TXT", help="BERT vocab.txt (--kind wordpiece)")
    p.add_argument("--cased", action="store_true", help="wordpiece: keep case (cased BERT vocabularies)")
    p.add_argument("--gpt2-encoder-json", metavar="FILE", help="RoBERTa/GPT-2 encoder.json (--kind gpt2)")
    p.add_argument("--gpt2-vocab-bpe", metavar="FILE", help="RoBERTa/GPT-2 vocab.bpe (--kind gpt2)")
    p.add_argument("--gpt2-dict", metavar="FILE", help="RoBERTa's dict.txt (keeps its token order)")
    p.add_argument(
        "--sample-sentences",
        type=int,
        default=1_000_000,
        help="sentences sampled from the cleaned corpus for training/counting (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=1, help="sampling / training seed")


def build_kwargs(args, workers, show_progress):
    return dict(
        vocab_size=args.vocab_size,
        model_type=args.model_type,
        character_coverage=args.character_coverage,
        byte_fallback=args.byte_fallback,
        wordpiece_vocab=args.wordpiece_vocab,
        cased=args.cased,
        encoder_json=args.gpt2_encoder_json,
        vocab_bpe=args.gpt2_vocab_bpe,
        gpt2_dict=args.gpt2_dict,
        sample_sentences_n=args.sample_sentences,
        seed=args.seed,
        workers=workers,
        show_progress=show_progress,
    )


def build_parser():
    p = argparse.ArgumentParser(
        description="Train a sentencepiece model on a sample of the cleaned corpus, or adopt a BERT "
        "vocab.txt or GPT-2 BPE files, and write the fairseq dict.txt. Prints counts as JSON."
    )
    p.add_argument("--clean", required=True, metavar="DIR", help="output directory of the clean step")
    p.add_argument("--out", required=True, metavar="DIR", help="tokenizer output directory")
    add_tokenizer_args(p)
    p.add_argument("--workers", type=int, default=0, help="sentencepiece training threads (0 = all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(name)s | %(message)s", stream=sys.stderr)
    try:
        files = training_files(args.clean)
        report = build_tokenizer(
            args.out, args.kind, files, **build_kwargs(args, resolve_workers(args.workers), not args.no_progress)
        )
    except ValueError as e:
        sys.exit(f"tokenizer: error: {e}")
    print(json.dumps({"step": "tokenizer", **report}, indent=2))


def training_files(clean_dir):
    """Every cleaned training file (all shards, all parts); validation text is left out."""
    first, num_shards = shard_files(clean_dir, 0)
    files = list(first)
    for k in range(1, num_shards):
        files.extend(shard_files(clean_dir, k)[0])
    return files
