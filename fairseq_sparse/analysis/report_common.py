"""What every `fairseq-sparse-analyze` command does first and last: load the checkpoint and the
examples from the parsed options, describe the run, and name and write the output files.

The report_* modules each run one command: they take the options the console script parsed (an
argparse.Namespace, as fairseq passes its cfg around) and return the paths they wrote.
"""
import ast
import os

import torch

from . import plots
from .examples import TokenTyper, make_batches, select_indices
from .loading import load_for_analysis
from .outputs import write_figure
from .pattern_classes import PatternThresholds


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
            raise ValueError(f"--model-overrides {args.model_overrides!r} is not a dict literal "
                             "(e.g. \"{'attn_normalizer': 'sparsemax'}\")")
    return load_for_analysis(
        checkpoint, args.data, split=args.split, arch=args.arch, head_name=args.classification_head_name,
        init_token=args.init_token, separator_token=args.separator_token, max_positions=args.max_positions,
        device=args.device, model_overrides=overrides,
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
    return PatternThresholds(vertical=args.vertical_threshold, diagonal=args.diagonal_threshold,
                             minor=args.minor_threshold, mixed=args.mixed_threshold, block=args.block_threshold,
                             offsets=tuple(args.diagonal_offsets))


def out_path(args, name):
    os.makedirs(args.out_dir, exist_ok=True)
    return os.path.join(args.out_dir, name)


def write_density(args, setup, stats, written):
    """A density heatmap only when the normaliser made exact zeros (softmax maps are dense)."""
    density = stats.density()
    if stats.rows and float(density.min()) < 1.0:
        written.append(write_figure(out_path(args, "attention_density.png"), plots.head_matrix(
            density, f"non-zero share of attention weights ({setup.normalizer})", "density", vmin=0, vmax=1)))
