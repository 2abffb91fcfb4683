#!/usr/bin/env python
"""Fine-tune a (converted or pre-trained) checkpoint on one GLUE task with its usual settings.

python examples/glue/finetune.py --task RTE --data data-bin/RTE --checkpoint ckpt/model.pt \
    --save-dir checkpoints/RTE [--dry-run] -- [more fairseq-train options, e.g. --attn-normalizer sparsemax]

Everything after `--` is appended to the fairseq-train command, so it overrides the defaults
(argparse keeps the last value). The command is printed before it runs.
"""

import argparse
import os

from fairseq_sparse.data import glue
from fairseq_sparse.data.sentence_prediction_data import read_meta
from fairseq_sparse.finetune.commands import glue_task_flags, sentence_prediction_command
from fairseq_sparse.finetune.recipe_cli import fail, input_errors_exit, show_and_run, split_passthrough

PROG = os.path.basename(__file__)


def main(argv=None):
    argv, extra = split_passthrough(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, help="CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI or RTE")
    p.add_argument("--data", required=True, help="directory written by examples/glue/preprocess.py")
    p.add_argument("--checkpoint", required=True, help="model.pt to start from")
    p.add_argument("--save-dir", required=True)
    p.add_argument(
        "--arch", default="sparse_roberta", help="fairseq architecture (dimensions come from the checkpoint)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the command only")
    args = p.parse_args(argv)
    with input_errors_exit(PROG):
        task = glue.get_task(args.task)
        meta = read_meta(args.data)
    if meta.get("glue_task") != task.name:
        fail(PROG, f"{args.data} holds {meta.get('glue_task')!r}, not {task.name!r}")
    cmd = sentence_prediction_command(
        args.data,
        args.checkpoint,
        args.save_dir,
        glue_task_flags(task),
        meta["bert_layout"],
        arch=args.arch,
        extra=extra,
    )
    show_and_run(cmd, args.dry_run)


if __name__ == "__main__":
    main()
