"""What every `fairseq-sparse-analyze` command does first and last: load the checkpoint and the
examples from the parsed options, describe the run, and name and write the output files.

The report_* modules each run one command: they take the options the console script parsed (an
argparse.Namespace, as fairseq passes its cfg around; the shared option groups are declared here,
beside the code that reads them) and return the paths they wrote.
"""

import ast
import os

import torch

from . import plots
from .examples import TokenTyper, make_batches, select_indices
from .loading import load_for_analysis
from .outputs import write_figure
from .pattern_classes import PatternThresholds


def add_model_args(p, two_checkpoints=False):
    """The options of every command that loads a checkpoint and a data split (read by load_setup)."""
    if two_checkpoints:
        p.add_argument("pretrained", metavar="PRETRAINED", help="first checkpoint (e.g. before fine-tuning)")
        p.add_argument("finetuned", metavar="FINETUNED", help="second checkpoint (e.g. after fine-tuning)")
    else:
        p.add_argument("checkpoint", metavar="CKPT", help="fairseq checkpoint (.pt)")
    p.add_argument("--data", required=True, help="sentence_prediction data-bin directory (input0/[input1/]label/)")
    p.add_argument("--split", default="valid", help="data split (default: valid)")
    p.add_argument("--out-dir", required=True, help="output directory (created if missing)")
    p.add_argument(
        "--classification-head-name",
        default=None,
        help="classification head to evaluate (default: the checkpoint's, else sentence_classification_head)",
    )
    p.add_argument(
        "--arch",
        default=None,
        help="architecture to rebuild the checkpoint as (default: its own if it has sparse attention "
        "modules, else sparse_roberta)",
    )
    p.add_argument(
        "--init-token",
        type=int,
        default=None,
        help="token put before each example (default: as fine-tuned, else 0 = <s>/[CLS])",
    )
    p.add_argument(
        "--separator-token",
        type=int,
        default=None,
        help="token put between the sentences of a pair, -1 for none (default: as fine-tuned, else "
        "none for BERT WordPiece data, 2 for RoBERTa)",
    )
    p.add_argument("--max-positions", type=int, default=None, help="truncate examples to this many tokens")
    p.add_argument(
        "--model-overrides",
        default=None,
        metavar="DICT",
        help="model options to replace, as a Python/JSON dict, e.g. \"{'attn_normalizer': 'sparsemax'}\"",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=1, help="seed of the example sample and random subsets")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_examples_arg(p, default):
    p.add_argument(
        "--max-examples",
        type=int,
        default=default,
        help=f"a seeded random sample of this many examples (default: {default or 'all'})",
    )


def add_threshold_args(p):
    """The rule-based classifier's thresholds (read by thresholds_from)."""
    d = PatternThresholds()
    g = p.add_argument_group("rule-based pattern thresholds (see fairseq_sparse/analysis/pattern_classes.py)")
    g.add_argument("--vertical-threshold", type=float, default=d.vertical, help="min [CLS]+[SEP] mass for vertical")
    g.add_argument("--diagonal-threshold", type=float, default=d.diagonal, help="min diagonal mass for diagonal")
    g.add_argument(
        "--minor-threshold",
        type=float,
        default=d.minor,
        help="the other feature must stay below this for a pure class; both above it for the mixed class",
    )
    g.add_argument("--mixed-threshold", type=float, default=d.mixed, help="min V + D for vertical+diagonal")
    g.add_argument("--block-threshold", type=float, default=d.block, help="min own-sentence share for block")
    g.add_argument(
        "--diagonal-offsets",
        type=int,
        nargs="+",
        default=list(d.offsets),
        help="key offsets from the query that count as diagonal (default: -1 1)",
    )


def set_threads(args):
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)


def load_setup(args, checkpoint):
    """The AnalysisSetup (model, task, dictionary) of `checkpoint` with the parsed options."""
    set_threads(args)
    overrides = None
    if args.model_overrides:
        try:
            overrides = ast.literal_eval(args.model_overrides)
        except (ValueError, SyntaxError):
            overrides = None
        if not isinstance(overrides, dict):
            raise ValueError(
                f"--model-overrides {args.model_overrides!r} is not a dict literal "
                "(e.g. \"{'attn_normalizer': 'sparsemax'}\")"
            )
    return load_for_analysis(
        checkpoint,
        args.data,
        split=args.split,
        arch=args.arch,
        head_name=args.classification_head_name,
        init_token=args.init_token,
        separator_token=args.separator_token,
        max_positions=args.max_positions,
        device=args.device,
        model_overrides=overrides,
    )


def example_batches(setup, args, indices=None):
    dataset = setup.task.dataset(args.split)
    chosen = select_indices(len(dataset), getattr(args, "max_examples", None), args.seed, indices)
    return make_batches(dataset, chosen, args.batch_size)


def token_typer(setup):
    return TokenTyper(setup.dictionary, setup.init_token, setup.separator_token)


def run_info(args, setup, n_examples):
    return {
        "command": " ".join([args.prog] + list(args.argv)),
        "checkpoint": getattr(args, "checkpoint", None),
        "data": args.data,
        "split": args.split,
        "arch": setup.arch,
        "attn_normalizer": setup.normalizer,
        "layers": setup.num_layers,
        "heads": setup.num_heads,
        "examples": n_examples,
        "init_token": setup.init_token,
        "separator_token": setup.separator_token,
        "max_positions": setup.task.cfg.max_positions,
        "model_overrides": args.model_overrides,
        "numbering": "layers and heads from 1",
    }


def thresholds_from(args):
    return PatternThresholds(
        vertical=args.vertical_threshold,
        diagonal=args.diagonal_threshold,
        minor=args.minor_threshold,
        mixed=args.mixed_threshold,
        block=args.block_threshold,
        offsets=tuple(args.diagonal_offsets),
    )


def out_path(args, name):
    os.makedirs(args.out_dir, exist_ok=True)
    return os.path.join(args.out_dir, name)


def write_density(args, setup, stats, written):
    """A density heatmap only when the normaliser made exact zeros (softmax maps are dense)."""
    density = stats.density()
    if stats.rows and float(density.min()) < 1.0:
        written.append(
            write_figure(
                out_path(args, "attention_density.png"),
                plots.head_matrix(
                    density, f"non-zero share of attention weights ({setup.normalizer})", "density", vmin=0, vmax=1
                ),
            )
        )
