"""fairseq-sparse-export-mask: binarise a DAM search checkpoint's mask into a .npy file (and a picture).

    fairseq-sparse-export-mask CHECKPOINT --out MASK.npy [--png MASKS.png] [--length N]

Writes M = 1[sigmoid(logit) > 0.5] of the learned mask logits as a bool array, (heads, n, n) for
a mask shared by all layers or (layers, heads, n, n), and prints what it wrote as JSON. The file
is what `--attn-mask file --attn-mask-file MASK.npy` reads (fairseq_sparse/masks/dam_export.py).
"""

import argparse
import json
import logging
import os
import sys

PROG = "fairseq-sparse-export-mask"


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Binarise the learned attention mask (DAM) of a checkpoint into a .npy file."
    )
    parser.add_argument("checkpoint", help="fairseq checkpoint (.pt) of a DAM search")
    parser.add_argument("--out", required=True, help="output mask file (.npy, bool)")
    parser.add_argument("--png", help="also draw every head's (and layer's) mask into this PNG")
    parser.add_argument("--length", type=int, help="mask size n (default: all positions the logits cover)")
    parser.add_argument("--key", help="state-dict key of the logits, when several keys contain 'dam_logits'")
    parser.add_argument(
        "--no-diagonal",
        action="store_true",
        help="drop the diagonal even if the checkpoint does not record dam_no_diagonal",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="write the mask even if it is all zero or a query row keeps no key (an error otherwise)",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from ..analysis.task_learned import not_learned_note
    from ..checkpoint_reader import read_model_state
    from ..masks.dam_export import EmptyMaskError, learned_keep_mask
    from ..masks.mask_file import save_mask_file

    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"{PROG}: checkpoint {args.checkpoint} does not exist")
    try:
        state = read_model_state(args.checkpoint)
        keep, report = learned_keep_mask(
            state, args.checkpoint, args.length, args.key, args.no_diagonal, args.allow_empty
        )
    except EmptyMaskError as err:  # from scratch: has the model learned its task? (analysis/task_learned.py)
        raise SystemExit(f"{PROG}: {err}\n{not_learned_note(args.checkpoint)}") from None
    except ValueError as err:
        raise SystemExit(f"{PROG}: {err}") from None
    if "empty" in report:  # written as asked (--allow-empty), but not silently
        print(f"{PROG}: warning: {report['empty']}\n{not_learned_note(args.checkpoint)}", file=sys.stderr)
    save_mask_file(args.out, keep[0] if report["shared_across_layers"] else keep)
    report = {"checkpoint": args.checkpoint, "out": args.out, **report}
    if args.png:
        logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's import set the root to DEBUG
        from ..analysis.outputs import write_figure
        from ..analysis.plots import mask_grid

        write_figure(args.png, mask_grid(keep, report))
        report["png"] = args.png
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
