"""fairseq-sparse-analyze: what the attention heads of a classifier do (after Kovaleva et al. 2019).

    fairseq-sparse-analyze maps CKPT --data DIR --out-dir OUT [--examples 0 7] [--text "A sentence."]
    fairseq-sparse-analyze ablate CKPT --data DIR --out-dir OUT [--random-heads 1 6 12] [--greedy-steps 20]
    fairseq-sparse-analyze patterns CKPT --data DIR --out-dir OUT [--max-examples 100] [--cnn CNN.pt]
    fairseq-sparse-analyze label-maps CKPT --data DIR --out-dir OUT [--num-maps 200]
    fairseq-sparse-analyze train-cnn --maps OUT/maps.npz --labels OUT/labels.csv --out-dir OUT
    fairseq-sparse-analyze special-tokens CKPT --data DIR --out-dir OUT
    fairseq-sparse-analyze drift PRETRAINED FINETUNED --data DIR --out-dir OUT

CKPT is any sparse_roberta / stock roberta / converted BERT checkpoint; DIR a sentence_prediction
data-bin directory (input0/[input1/]label/). Each command writes JSON numbers and PNG pictures to
OUT. Layers and heads are numbered from 1 in the outputs, as in the paper. This script parses;
each command's work is in fairseq_sparse/analysis/report_<command>.py (report_label_maps.py, ...).
"""

import argparse
import importlib
import logging
import sys

PROG = "fairseq-sparse-analyze"


def build_parser():
    from fairseq_sparse.analysis.report_common import add_examples_arg, add_model_args, add_threshold_args

    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("maps", help="attention maps of chosen examples as a layers x heads grid")
    add_model_args(p)
    p.add_argument(
        "--examples",
        type=int,
        nargs="+",
        help="0-based example indices in the split (default: 0 unless --text is given)",
    )
    p.add_argument(
        "--text",
        action="append",
        default=[],
        help="raw text to analyse instead (tokenised with the checkpoint's BPE; repeatable)",
    )
    p.add_argument(
        "--bpe-vocab-file",
        default=None,
        help="WordPiece vocab.txt for --text (default: the BPE the checkpoint records, if any)",
    )
    p.add_argument("--bpe-cased", action="store_true", help="cased WordPiece for --text")
    p.add_argument("--show-tokens", type=int, default=48, help="write token strings on the axes up to this length")
    p.add_argument("--save-maps", action="store_true", help="also write each example's maps as .npz")

    p = sub.add_parser("ablate", help="disable heads / layers (uniform attention) and score the dev set")
    add_model_args(p)
    add_examples_arg(p, None)
    p.add_argument("--metric", default=None, help="accuracy, f1, macro_f1, mcc; pearson, spearman for regression")
    p.add_argument(
        "--random-heads",
        type=int,
        nargs="+",
        default=[],
        metavar="K",
        help="also disable K random heads at once, for each K",
    )
    p.add_argument("--random-trials", type=int, default=10, help="random subsets per K (default 10)")
    p.add_argument(
        "--greedy-steps",
        type=int,
        default=0,
        help="greedy pruning steps (remove the head that hurts least; -1 = all heads; default 0 = off)",
    )
    p.add_argument(
        "--greedy-candidates",
        type=int,
        default=0,
        help="lazy greedy: re-evaluate only this many best-ranked heads per step (default 0 = all)",
    )
    p.add_argument("--cache-mb", type=int, default=2048, help="memory for cached layer inputs (default 2048)")
    p.add_argument(
        "--bootstrap-resamples",
        type=int,
        default=1000,
        help="paired bootstrap resamples of the examples for each head's interval (default 1000)",
    )
    p.add_argument("--confidence", type=float, default=0.95, help="coverage of the intervals (default 0.95)")

    p = sub.add_parser("patterns", help="classify head maps into the five pattern classes")
    add_model_args(p)
    add_examples_arg(p, 100)
    add_threshold_args(p)
    p.add_argument("--cnn", default=None, help="also classify with a CNN from `train-cnn` and report agreement")

    p = sub.add_parser("label-maps", help="export maps to label by hand (PNGs, maps.npz, labels.csv template)")
    add_model_args(p)
    add_examples_arg(p, 100)
    add_threshold_args(p)
    p.add_argument("--num-maps", type=int, default=200, help="maps to export (random (example, layer, head))")
    p.add_argument("--image-size", type=int, default=32, help="side of the CNN input image (default 32)")
    p.add_argument("--sheet-size", type=int, default=20, help="maps per contact sheet (default 20)")

    p = sub.add_parser("train-cnn", help="train the pattern CNN on labelled maps; agreement with the rules")
    p.add_argument("--maps", required=True, help="maps.npz written by label-maps")
    p.add_argument("--labels", required=True, help="labels.csv with the label column filled in")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds for the agreement (default 5)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")

    p = sub.add_parser("special-tokens", help="attention to [CLS], [SEP] and punctuation per head")
    add_model_args(p)
    add_examples_arg(p, 1000)

    p = sub.add_parser("drift", help="per-head cosine similarity of two checkpoints' maps")
    add_model_args(p, two_checkpoints=True)
    add_examples_arg(p, 1000)
    return parser


def run(argv=None):
    """Parse, run one command, print and return the files it wrote (main() minus the exit code)."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    args = build_parser().parse_args(argv)
    args.argv, args.prog = argv, PROG
    import fairseq  # noqa: F401  (importing fairseq sets the root logger to DEBUG: reset it after)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("fairseq_sparse").setLevel(logging.INFO)
    import matplotlib

    matplotlib.use("Agg")
    report = importlib.import_module("fairseq_sparse.analysis.report_" + args.command.replace("-", "_"))
    try:
        written = report.run(args)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"{PROG} {args.command}: error: {err}")
    for path in written:
        print(f"wrote {path}")
    return written


def main(argv=None):
    run(argv)


if __name__ == "__main__":
    main()
