"""fairseq-sparse-export-mask: binarise a DAM search checkpoint's mask into a .npy file (and a picture).

    fairseq-sparse-export-mask CHECKPOINT --out MASK.npy [--png MASKS.png] [--length N]

Reads the learned mask logits (state-dict keys containing `dam_logits`) from a fairseq
checkpoint, binarises them as M = 1[sigmoid(alpha) > 0.5], writes M as a bool array of shape
(heads, n, n) for a mask shared by all layers or (layers, heads, n, n), and prints its density
as JSON. The file is what `--attn-mask file --attn-mask-file MASK.npy` reads.
"""
import argparse
import json
import logging
import os
import sys

import torch

from ..atomic_files import atomic_output

LOGITS_KEY = "dam_logits"
NO_DIAGONAL_KEY = "dam_no_diagonal"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fairseq-sparse-export-mask",
        description="Binarise the learned attention mask (DAM) of a checkpoint into a .npy file.",
    )
    parser.add_argument("checkpoint", help="fairseq checkpoint (.pt) of a DAM search")
    parser.add_argument("--out", required=True, help="output mask file (.npy, bool)")
    parser.add_argument("--png", help="also draw every head's (and layer's) mask into this PNG")
    parser.add_argument("--length", type=int, help="mask size n (default: all positions the logits cover)")
    parser.add_argument("--key", help=f"state-dict key of the logits, when several keys contain {LOGITS_KEY!r}")
    parser.add_argument("--no-diagonal", action="store_true",
                        help="drop the diagonal even if the checkpoint does not record dam_no_diagonal")
    parser.add_argument("--allow-empty", action="store_true",
                        help="write the mask even if it is all zero or a query row keeps no key (an error otherwise)")
    return parser


def load_checkpoint_state(path):
    """The model state dict of a fairseq checkpoint (or of a bare state dict), loaded safely."""
    from ..checkpoint_reader import read_model_state

    if not os.path.isfile(path):
        raise SystemExit(f"fairseq-sparse-export-mask: checkpoint {path} does not exist")
    try:
        return read_model_state(path)
    except ValueError as err:
        raise SystemExit(f"fairseq-sparse-export-mask: {err}") from None


def find_logits(state, path, key=None):
    """(key, logits tensor, no_diagonal flag or None) of the DAM logits in a state dict."""
    if key is not None:
        if key not in state:
            raise SystemExit(f"fairseq-sparse-export-mask: key {key!r} is not in {path}")
        found = [key]
    else:
        found = sorted(k for k in state if LOGITS_KEY in k)
        if not found:
            sample = ", ".join(list(state)[:5])
            raise SystemExit(
                f"fairseq-sparse-export-mask: no DAM logits (keys containing {LOGITS_KEY!r}) in {path}; "
                f"was it trained with --attn-mask dam? Its keys start: {sample}"
            )
        if len(found) > 1:
            raise SystemExit(
                f"fairseq-sparse-export-mask: several DAM logits in {path}: {found}; choose one with --key"
            )
    logits = state[found[0]]
    if not isinstance(logits, torch.Tensor) or logits.dim() not in (3, 4):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise SystemExit(
            f"fairseq-sparse-export-mask: {found[0]} has shape {shape}; expected (layers, heads, positions) "
            "or (layers, heads, positions, positions)"
        )
    flag = state.get(found[0].replace(LOGITS_KEY, NO_DIAGONAL_KEY))
    return found[0], logits, None if flag is None else bool(flag)


def draw_masks(keep, densities, path):
    """A grid of the masks (rows: layers, columns: heads) written to a PNG through a temporary file."""
    # importing fairseq sets the root logger to DEBUG; keep matplotlib's start-up chatter quiet
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, heads = keep.shape[0], keep.shape[1]
    fig, axes = plt.subplots(layers, heads, figsize=(1.7 * heads + 0.4, 1.9 * layers + 0.4), squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer][head]
            ax.imshow(keep[layer, head].numpy(), cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
            title = f"H{head} d={densities['density_per_head'][layer][head]:.2f}"
            ax.set_title(title if layers == 1 else f"L{layer} {title}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    n = keep.shape[-1]
    fig.suptitle(f"kept keys (black), {n} x {n}, density {densities['density']:.3f}", fontsize=9)
    fig.tight_layout()
    try:
        with atomic_output(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)


def main(argv=None):
    args = build_parser().parse_args(argv)
    from ..masks.dam import binarize_dam_logits, mask_densities
    from ..masks.mask_file import empty_mask_problem, save_mask_file

    state = load_checkpoint_state(args.checkpoint)
    key, logits, stored_no_diagonal = find_logits(state, args.checkpoint, args.key)
    no_diagonal = args.no_diagonal or bool(stored_no_diagonal)
    positions = logits.shape[-1]
    if args.length is not None and not 1 <= args.length <= positions:
        raise SystemExit(f"fairseq-sparse-export-mask: --length must be in [1, {positions}], got {args.length}")
    keep = binarize_dam_logits(logits.float(), args.length, no_diagonal)
    shared = keep.shape[0] == 1
    problem = empty_mask_problem(keep[0] if shared else keep)
    if problem and not args.allow_empty:
        raise SystemExit(
            f"fairseq-sparse-export-mask: the learned mask in {args.checkpoint} is unusable: {problem}. "
            f"Per-head densities: {mask_densities(keep)['density_per_head']}. The search drove those logits "
            "below 0 (a smaller --dam-lambda or a longer search may keep more); --allow-empty writes it anyway"
        )
    save_mask_file(args.out, keep[0] if shared else keep)
    densities = mask_densities(keep)
    report = {
        "checkpoint": args.checkpoint,
        "key": key,
        "out": args.out,
        "shape": list(keep.shape[1:] if shared else keep.shape),
        "structure": "structured" if logits.dim() == 3 else "unstructured",
        "shared_across_layers": shared,
        "no_diagonal": no_diagonal,
        **densities,
    }
    if problem:
        report["empty"] = problem
    if args.png:
        draw_masks(keep, densities, args.png)
        report["png"] = args.png
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
