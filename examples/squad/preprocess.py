#!/usr/bin/env python
"""Official SQuAD JSON -> binarised features for `--task squad`.

python examples/squad/preprocess.py --train train-v2.0.json --valid dev-v2.0.json --dest data-bin/squad2 \
    --bpe bert_wordpiece --bpe-vocab-file ckpt/vocab.txt --srcdict ckpt/dict.txt \
    [--max-seq-length 384 --doc-stride 128 --max-query-length 64]
"""

import argparse
import logging
import os

from fairseq.data import Dictionary

from fairseq_sparse.data.checkpoint_tokenizer import (
    add_tokenizer_args,
    build_tokenizer,
    tokenizer_argv,
    uses_bert_layout,
)
from fairseq_sparse.data.squad import FeatureBuilder, write_squad_data
from fairseq_sparse.finetune.recipe_cli import fail, input_errors_exit

PROG = os.path.basename(__file__)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", help="training JSON (train-v1.1.json / train-v2.0.json)")
    p.add_argument("--valid", help="development JSON (dev-v1.1.json / dev-v2.0.json); several: comma-separated")
    p.add_argument("--dest", required=True)
    p.add_argument("--max-seq-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--max-query-length", type=int, default=64)
    add_tokenizer_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.train and not args.valid:
        fail(PROG, "give --train and/or --valid")
    splits = {}
    if args.train:
        splits["train"] = (args.train, True)
    for k, path in enumerate((args.valid or "").split(",") if args.valid else []):
        splits["valid" + (str(k) if k else "")] = (path, False)
    with input_errors_exit(PROG):
        bpe = build_tokenizer(args)
        dictionary = Dictionary.load(args.srcdict)
        dictionary.add_symbol("<mask>")
        builder = FeatureBuilder(
            bpe,
            dictionary,
            bert_layout=uses_bert_layout(args),
            space_prefix=args.bpe == "gpt2",
            max_seq_length=args.max_seq_length,
            doc_stride=args.doc_stride,
            max_query_length=args.max_query_length,
        )
        meta = write_squad_data(
            args.dest,
            splits,
            builder,
            args.srcdict,
            extra_meta={
                "tokenizer": tokenizer_argv(args),
                "source_files": {s: path for s, (path, _) in splits.items()},
            },
        )
    print(f"{args.dest}: SQuAD v{meta['version']} {meta['splits']}")


if __name__ == "__main__":
    main()
