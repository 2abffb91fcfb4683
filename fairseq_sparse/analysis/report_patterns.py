"""`fairseq-sparse-analyze patterns`: the share of each pattern class per layer and head (rules,
and optionally a trained CNN on the same maps), with pictures and patterns.json/.md."""

import numpy as np
import torch

from . import metrics, plots
from .attention_maps import SparsityStats, iterate_maps
from .outputs import write_figure, write_json, write_text
from .pattern_classes import CLASSES, PatternCounter, shares_table
from .pattern_cnn import load_cnn, map_image, predict
from .report_common import example_batches, load_setup, out_path, run_info, thresholds_from, token_typer, write_density


def _pattern_pass(args, setup, thresholds, cnn=None):
    """Stream the maps once: rule-based counts, sparsity and, with a CNN, its classes of the same maps."""
    batches = example_batches(setup, args)
    typer = token_typer(setup)
    counter = PatternCounter(setup.num_layers, setup.num_heads, thresholds)
    cnn_counts = torch.zeros_like(counter.counts)
    stats = SparsityStats(setup.num_layers, setup.num_heads)
    rule_labels, cnn_labels = [], []
    for _, tokens, maps in iterate_maps(
        setup.model, batches, setup.dictionary.pad(), setup.device, progress=not args.no_progress
    ):
        labels, _ = counter.update(maps, typer.types(tokens))
        stats.update(maps)
        if cnn is not None:
            images = np.stack([map_image(m, cnn.size) for m in maps.reshape(-1, *maps.shape[-2:])])
            pred = predict(cnn, images).reshape(labels.shape)
            cnn_counts.scatter_add_(-1, pred.unsqueeze(-1), torch.ones_like(pred).unsqueeze(-1))
            rule_labels.append(labels.reshape(-1).cpu())
            cnn_labels.append(pred.reshape(-1))
    cnn_result = None
    if cnn is not None:
        cnn_result = (cnn_counts, torch.cat(rule_labels), torch.cat(cnn_labels))
    return counter, stats, cnn_result, sum(len(b.indices) for b in batches)


def run(args):
    thresholds = thresholds_from(args)
    cnn = load_cnn(args.cnn) if args.cnn else None
    setup = load_setup(args, args.checkpoint)
    counter, stats, cnn_result, n = _pattern_pass(args, setup, thresholds, cnn)
    per_layer, overall = counter.shares()
    majority = counter.majority()
    feats = counter.mean_features()
    result = {
        "run": run_info(args, setup, n),
        "classes": list(CLASSES),
        "thresholds": vars(thresholds),
        "maps_classified": int(counter.counts.sum()),
        "share_per_layer": {CLASSES[c]: per_layer[:, c] for c in range(len(CLASSES))},
        "share_overall": {CLASSES[c]: overall[c] for c in range(len(CLASSES))},
        "head_majority_class": [[CLASSES[c] for c in row] for row in majority.tolist()],
        "head_class_counts": counter.counts,
        "mean_features": feats,
        "table": shares_table(per_layer, overall),
        "sparsity": stats.to_json(),
    }
    written = []
    if cnn is not None:
        cnn_counts, rule, net = cnn_result
        cnn_counter = PatternCounter(setup.num_layers, setup.num_heads)
        cnn_counter.counts = cnn_counts
        c_layer, c_all = cnn_counter.shares()
        result["cnn"] = {
            "file": args.cnn,
            "agreement_with_rules": {
                "accuracy": metrics.accuracy(rule, net),
                "cohen_kappa": metrics.cohen_kappa(rule, net, len(CLASSES)),
            },
            "share_per_layer": {CLASSES[c]: c_layer[:, c] for c in range(len(CLASSES))},
            "share_overall": {CLASSES[c]: c_all[c] for c in range(len(CLASSES))},
            "head_majority_class": [[CLASSES[c] for c in row] for row in cnn_counter.majority().tolist()],
            "table": shares_table(c_layer, c_all),
        }
        written.append(
            write_figure(
                out_path(args, "patterns_cnn_shares.png"),
                plots.class_shares(c_layer, c_all, f"pattern classes by the CNN ({n} examples)"),
            )
        )
        print(
            f"CNN vs rules: accuracy {result['cnn']['agreement_with_rules']['accuracy']:.3f}, "
            f"kappa {result['cnn']['agreement_with_rules']['cohen_kappa']:.3f}"
        )
    written.append(
        write_figure(
            out_path(args, "patterns_shares.png"),
            plots.class_shares(
                per_layer, overall, f"pattern classes (rule-based) over {int(counter.counts.sum())} maps, {n} examples"
            ),
        )
    )
    written.append(
        write_figure(
            out_path(args, "patterns_heads.png"),
            plots.class_grid(majority, "each head's most frequent class (rule-based)"),
        )
    )
    written.append(
        write_figure(
            out_path(args, "patterns_features.png"),
            plots.head_matrix(feats["vertical"], "mean [CLS]+[SEP] (vertical) mass", "mass", vmin=0, vmax=1),
        )
    )
    written.append(
        write_figure(
            out_path(args, "patterns_diagonal.png"),
            plots.head_matrix(
                feats["diagonal"], f"mean diagonal mass (offsets {list(thresholds.offsets)})", "mass", vmin=0, vmax=1
            ),
        )
    )
    write_density(args, setup, stats, written)
    written.append(write_text(out_path(args, "patterns.md"), result["table"] + "\n"))
    written.append(write_json(out_path(args, "patterns.json"), result))
    print(result["table"])
    return written
