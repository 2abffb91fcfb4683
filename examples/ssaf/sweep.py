#!/usr/bin/env python
"""Fine-tune once per sparsegen-lin lambda (and once with softmax) and tabulate dev/test accuracy.

python examples/ssaf/sweep.py --data data-bin/sst2 --checkpoint ckpt/model.pt --out-dir sweeps/sst2 \
    [--lambdas -8,-6,-4,-2,-1,-0.5,0] [--no-softmax] [--epochs 3 --lr 2e-5 --batch-size 32] \
    -- [more fairseq-train options]

Each run saves to OUT_DIR/<name>/ (log: OUT_DIR/<name>.log) and its checkpoint_best.pt is scored
on the valid and test splits with examples/glue/predict.py's code; OUT_DIR/results.tsv gets one
row per run as it finishes.
lambda = 0 is sparsemax; lambda -> -inf approaches uniform attention; lambda must stay < 1.
"""

import argparse
import importlib.util
import logging
import math
import os
import subprocess

from fairseq_sparse.atomic_files import atomic_output
from fairseq_sparse.data.sentence_prediction_data import read_meta
from fairseq_sparse.finetune.commands import classification_flags, sentence_prediction_command
from fairseq_sparse.finetune.recipe_cli import fail, split_passthrough

PROG = os.path.basename(__file__)
HERE = os.path.dirname(os.path.abspath(__file__))
PREDICT = os.path.join(HERE, "..", "glue", "predict.py")
DEFAULT_LAMBDAS = "-8,-6,-4,-2,-1,-0.5,0"


def load_predict():
    """examples/glue/predict.py as a module: one process scores every run's checkpoint."""
    spec = importlib.util.spec_from_file_location("glue_predict", PREDICT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scores(predict, data, checkpoint, splits, cpu):
    """{split: accuracy} of a checkpoint on labelled splits."""
    model, task = predict.load_model(checkpoint, data, cpu)
    out = {}
    for split in splits:
        _, preds, targets = predict.predict(model, task, split, cpu=cpu)
        out[split] = 100.0 * float((preds == targets).mean())
    return out


def write_table(path, rows):
    """The whole table so far, replaced in one step: a reader never sees half a row."""
    with atomic_output(path) as f:
        f.writelines(rows)


def main(argv=None):
    argv, extra = split_passthrough(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="directory written by examples/ssaf/preprocess.py")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--lambdas", default=DEFAULT_LAMBDAS, help=f"comma-separated (default {DEFAULT_LAMBDAS})")
    p.add_argument("--no-softmax", action="store_true", help="skip the softmax baseline run")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="epochs per run; the lr decays linearly to 0 over them")
    args = p.parse_args(argv)
    try:
        lambdas = [float(x) for x in args.lambdas.split(",")]
    except ValueError:
        fail(PROG, f"--lambdas {args.lambdas!r} is not a comma-separated list of numbers")
    bad = [x for x in lambdas if not x < 1]
    if bad:
        fail(PROG, f"sparsegen-lin needs lambda < 1, got {bad}")
    meta = read_meta(args.data)
    runs = [] if args.no_softmax else [("softmax", ["--attn-normalizer", "softmax"])]
    runs += [
        (f"sparsegen_{x:g}", ["--attn-normalizer", "sparsegen_lin", "--sparsegen-lambda", str(x)]) for x in lambdas
    ]
    os.makedirs(args.out_dir, exist_ok=True)
    table = os.path.join(args.out_dir, "results.tsv")
    cpu = "--cpu" in extra
    has_test = "test" in meta["splits"]
    predict = load_predict()
    logging.getLogger("fairseq").setLevel(logging.WARNING)  # scoring reloads data per run: keep the table readable
    rows = ["run\tvalid_accuracy\ttest_accuracy\n"]
    write_table(table, rows)
    updates = args.epochs * math.ceil(meta["splits"]["train"] / args.batch_size)
    task_flags = classification_flags(
        meta["num_classes"],
        lr=args.lr,
        batch_size=args.batch_size,
        total_updates=updates,
        warmup_updates=max(1, int(0.06 * updates)),
    )
    task_flags += ["--max-epoch", str(args.epochs)]
    for name, flags in runs:
        save = os.path.join(args.out_dir, name)
        cmd = sentence_prediction_command(
            args.data, args.checkpoint, save, task_flags, meta["bert_layout"], extra=[*flags, *extra]
        )
        print(f"== {name}", flush=True)
        with atomic_output(os.path.join(args.out_dir, f"{name}.log")) as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
        if rc != 0:
            fail(PROG, f"run {name} failed (rc={rc}); see {args.out_dir}/{name}.log")
        acc = scores(
            predict,
            args.data,
            os.path.join(save, "checkpoint_best.pt"),
            ["valid", "test"] if has_test else ["valid"],
            cpu,
        )
        valid, test = acc["valid"], acc.get("test", float("nan"))
        rows.append(f"{name}\t{valid:.2f}\t{test:.2f}\n")
        write_table(table, rows)
        print(f"{name}: valid {valid:.2f} test {test:.2f}", flush=True)
    print(f"results: {table}")


if __name__ == "__main__":
    main()
