#!/usr/bin/env python
"""Short fine-tune of a converted BERT on the BBC News data of prepare_bbc.py (CPU-sized).

python examples/analysis/finetune_bbc.py --data runs/analysis/bbc-bin --checkpoint runs/analysis/minilm/model.pt \
    --save-dir runs/analysis/bbc-ft [--epochs 2] [--lr 5e-5] [--dry-run] -- [more fairseq-train options]

The command is the plugin's sentence_prediction recipe (fairseq_sparse/finetune/commands.py)
with a polynomial-decay schedule over the given epochs; it is printed before it runs.
"""
import argparse
import math
import shlex
import subprocess
import sys

from fairseq_sparse.finetune.commands import classification_flags, sentence_prediction_command
from fairseq_sparse.data.sentence_prediction_data import read_meta


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", required=True, help="converted model.pt (with --pooler-head-classes 5)")
    p.add_argument("--save-dir", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dry-run", action="store_true", help="print the command only")
    args = p.parse_args(argv)
    try:
        meta = read_meta(args.data)
    except FileNotFoundError as e:
        sys.exit(f"finetune_bbc.py: error: {e}")
    updates = args.epochs * math.ceil(meta["splits"]["train"] / args.batch_size)
    flags = classification_flags(meta["num_classes"], lr=args.lr, batch_size=args.batch_size,
                                 total_updates=updates, warmup_updates=max(1, updates // 10))
    run = ["--max-epoch", str(args.epochs), "--seed", str(args.seed), "--num-workers", "0",
           "--log-format", "simple", "--log-interval", "10"]
    try:
        import torch

        if not torch.cuda.is_available():
            run.append("--cpu")
    except ImportError:
        pass
    cmd = sentence_prediction_command(args.data, args.checkpoint, args.save_dir, flags, meta.get("bert_layout", True),
                                      extra=run + extra)
    print(" ".join(shlex.quote(c) for c in cmd), flush=True)
    if not args.dry_run:
        sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
