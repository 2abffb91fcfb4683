#!/usr/bin/env python
"""SSAF datasets in their released formats -> binarised data for fairseq's sentence_prediction.

python examples/ssaf/preprocess.py --dataset sst2 --train trees/train.txt --valid trees/dev.txt \
    --test trees/test.txt --dest data-bin/sst2 --bpe bert_wordpiece --bpe-vocab-file ckpt/vocab.txt \
    --srcdict ckpt/dict.txt
python examples/ssaf/preprocess.py --dataset sentube --input SenTube/automobiles_EN --dest data-bin/sentube_auto ...
(see fairseq_sparse/data/ssaf.py for the formats read)
"""

import argparse
import logging
import os

from fairseq_sparse.data.checkpoint_tokenizer import (
    add_tokenizer_args,
    build_tokenizer,
    tokenizer_argv,
    uses_bert_layout,
)
from fairseq_sparse.data.sentence_prediction_data import write_sentence_prediction_data
from fairseq_sparse.data.ssaf import DATASETS, read_dataset
from fairseq_sparse.finetune.recipe_cli import input_errors_exit

PROG = os.path.basename(__file__)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--train", help="training file")
    p.add_argument("--valid", help="development file")
    p.add_argument("--test", help="test file (labelled: scored by examples/glue/predict.py --split test)")
    p.add_argument("--input", help="SenTube: directory of per-video JSON files")
    p.add_argument("--phrases", action="store_true", help="SST trees: also train on every labelled sub-phrase")
    p.add_argument("--dest", required=True)
    p.add_argument("--workers", type=int, default=1)
    add_tokenizer_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    files = {s: getattr(args, s) for s in ("train", "valid", "test") if getattr(args, s)}
    with input_errors_exit(PROG):
        splits, labels = read_dataset(args.dataset, files=files, directory=args.input, phrases=args.phrases)
        tokenizer = build_tokenizer(args)
    meta = write_sentence_prediction_data(
        args.dest,
        splits,
        tokenizer,
        args.srcdict,
        label_names=labels,
        workers=args.workers,
        extra_meta={"dataset": args.dataset, "bert_layout": uses_bert_layout(args), "tokenizer": tokenizer_argv(args)},
    )
    print(f"{args.dest}: {meta['splits']} labels {labels}")


if __name__ == "__main__":
    main()
