"""`fairseq-sparse-analyze label-maps`: a random sample of head maps to label by hand (PNGs and
contact sheets, maps.npz for the CNN, a labels.csv template); `train-cnn` reads them back."""

import os
import random

import numpy as np

from . import plots
from .attention_maps import iterate_maps
from .examples import select_indices
from .outputs import write_csv, write_figure, write_json, write_npz
from .pattern_classes import CLASSES, classify, map_features
from .pattern_cnn import LABEL_COLUMNS, map_image
from .report_common import example_batches, load_setup, out_path, run_info, thresholds_from, token_typer

FEATURES = ("vertical", "diagonal", "block")  # rule features stored with exported maps, for calibration


def run(args):
    if args.num_maps < 1:
        raise ValueError(f"--num-maps must be >= 1, got {args.num_maps}")
    thresholds = thresholds_from(args)
    setup = load_setup(args, args.checkpoint)
    dataset = setup.task.dataset(args.split)
    examples = select_indices(len(dataset), args.max_examples, args.seed)
    rng = random.Random(args.seed)
    every = [(i, l, h) for i in examples for l in range(setup.num_layers) for h in range(setup.num_heads)]
    keep = {}
    for i, l, h in sorted(rng.sample(every, min(args.num_maps, len(every)))):
        keep.setdefault(i, []).append((l, h))
    kept = _maps_to_label(args, setup, thresholds, keep)
    written = []
    os.makedirs(out_path(args, "maps"), exist_ok=True)
    rows, images, sheet_images, rules, features = [], [], [], [], []
    for map_id, (index, layer, head, attention, tokens, rule, feats) in enumerate(kept):
        png = os.path.join("maps", f"map_{map_id:04d}.png")
        written.append(
            write_figure(
                out_path(args, png),
                plots.single_map(
                    attention.numpy(),
                    tokens,
                    f"map {map_id}: example {index}, layer {layer + 1}, head {head + 1}",
                    show_tokens=40,
                ),
                dpi=80,
            )
        )
        images.append(map_image(attention, args.image_size))
        sheet_images.append((attention / attention.max().clamp(min=1e-12)).numpy())
        rules.append(rule)
        features.append([feats[k] for k in FEATURES])
        rows.append([map_id, index, layer + 1, head + 1, png, ""])
    images = np.stack(images)
    for start in range(0, len(images), args.sheet_size):
        part = slice(start, start + args.sheet_size)
        written.append(
            write_figure(
                out_path(args, f"sheet_{start // args.sheet_size:02d}.png"),
                plots.contact_sheet(sheet_images[part], [f"#{r[0]} L{r[2]}H{r[3]}" for r in rows[part]]),
                dpi=80,
            )
        )
    # the rule-based class stays out of the CSV, so it cannot sway the person labelling
    written.append(
        write_npz(
            out_path(args, "maps.npz"),
            images=images,
            map_id=np.array([r[0] for r in rows]),
            example=np.array([r[1] for r in rows]),
            layer=np.array([r[2] for r in rows]),
            head=np.array([r[3] for r in rows]),
            rule_label=np.array(rules),
            **{k: np.array(features)[:, i] for i, k in enumerate(FEATURES)},
        )
    )
    written.append(write_csv(out_path(args, "labels.csv"), LABEL_COLUMNS, rows))
    written.append(
        write_json(
            out_path(args, "label_maps.json"),
            {
                "run": run_info(args, setup, len(keep)),
                "maps": len(rows),
                "image_size": args.image_size,
                "classes": list(CLASSES),
                "thresholds": vars(thresholds),
                "how_to_label": "fill the 'label' column of labels.csv with a class name or v, d, vd, b, h "
                "(look at the PNG in the 'png' column or the contact sheets); leave it blank to skip",
            },
        )
    )
    print(
        f"exported {len(rows)} maps; fill the label column of {out_path(args, 'labels.csv')}, then run "
        f"`{args.prog} train-cnn --maps {out_path(args, 'maps.npz')} "
        f"--labels {out_path(args, 'labels.csv')} --out-dir ...`"
    )
    return written


def _maps_to_label(args, setup, thresholds, keep):
    batches = example_batches(setup, args, indices=sorted(keep))
    typer = token_typer(setup)
    kept = []
    for index, tokens, maps in iterate_maps(
        setup.model, batches, setup.dictionary.pad(), setup.device, progress=not args.no_progress
    ):
        feats = map_features(maps, typer.types(tokens), thresholds.offsets)
        labels = classify(feats, thresholds)
        for layer, head in keep.get(index, []):
            kept.append(
                (
                    index,
                    layer,
                    head,
                    maps[layer, head].clone(),
                    typer.strings(tokens),
                    int(labels[layer, head]),
                    {k: float(feats[k][layer, head]) for k in FEATURES},
                )
            )
    kept.sort(key=lambda k: (k[0], k[1], k[2]))
    return kept
