#!/usr/bin/env python
"""GLUE TSVs -> binarised input0/input1/label dirs for fairseq's sentence_prediction.

python examples/glue/preprocess.py --glue-dir GLUE --task RTE --dest data-bin/RTE \
    --bpe bert_wordpiece --bpe-vocab-file ckpt/vocab.txt --srcdict ckpt/dict.txt
"""

import argparse
import logging
import os

from fairseq_sparse.data import glue
from fairseq_sparse.data.checkpoint_tokenizer import (
    add_tokenizer_args,
    build_tokenizer,
    tokenizer_argv,
    uses_bert_layout,
)
from fairseq_sparse.data.sentence_prediction_data import write_sentence_prediction_data
from fairseq_sparse.finetune.recipe_cli import input_errors_exit

PROG = os.path.basename(__file__)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--glue-dir", required=True, help="GLUE download root (GLUE_DIR/<Task>/train.tsv ...)")
    p.add_argument("--task", required=True, help="CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI or RTE")
    p.add_argument("--dest", required=True, help="output data directory")
    p.add_argument("--no-test", action="store_true", help="skip test.tsv")
    p.add_argument("--workers", type=int, default=1)
    add_tokenizer_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with input_errors_exit(PROG):
        task = glue.get_task(args.task)
        splits = glue.read_glue(args.glue_dir, task, include_test=not args.no_test)
        tokenizer = build_tokenizer(args)
    meta = write_sentence_prediction_data(
        args.dest,
        splits,
        tokenizer,
        args.srcdict,
        label_names=task.label_names,
        regression=task.regression,
        workers=args.workers,
        extra_meta={
            "glue_task": task.name,
            "bert_layout": uses_bert_layout(args),
            "tokenizer": tokenizer_argv(args),
            "source_files": {s: task.files[s] for s in splits},
            "server_files": task.server_files,
        },
    )
    print(f"{args.dest}: {meta['splits']}")


if __name__ == "__main__":
    main()
