#!/usr/bin/env python
"""Fine-tune a checkpoint on preprocessed SQuAD (v1.1 or v2.0) with BERT's SQuAD settings.

python examples/squad/finetune.py --data data-bin/squad2 --checkpoint ckpt/model.pt \
    --save-dir checkpoints/squad2 [--lr 3e-5 --batch-size 32 --epochs 2] [--dry-run] \
    -- [more fairseq-train options, e.g. --attn-normalizer entmax15 --max-answer-length 30]

Validation prints the official `em` and `f1` (and span_acc); checkpoint_best.pt is the best F1.
"""

import argparse
import json
import os

from fairseq_sparse.finetune.commands import squad_command
from fairseq_sparse.finetune.recipe_cli import fail, show_and_run, split_passthrough

PROG = os.path.basename(__file__)


def main(argv=None):
    argv, extra = split_passthrough(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="directory written by examples/squad/preprocess.py")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--save-dir", required=True)
    p.add_argument("--arch", default="sparse_roberta")
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--dry-run", action="store_true", help="print the command only")
    args = p.parse_args(argv)
    meta_path = os.path.join(args.data, "meta.json")
    if not os.path.isfile(meta_path):
        fail(PROG, f"{meta_path} not found (run examples/squad/preprocess.py first)")
    with open(meta_path) as f:
        meta = json.load(f)
    if "train" not in meta["splits"]:
        fail(PROG, f"{args.data} has no train split")
    cmd = squad_command(
        args.data,
        args.checkpoint,
        args.save_dir,
        meta["splits"]["train"]["features"],
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        arch=args.arch,
        extra=extra,
    )
    show_and_run(cmd, args.dry_run)


if __name__ == "__main__":
    main()
