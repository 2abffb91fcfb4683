"""`fairseq-sparse-analyze drift`: per-head cosine similarity of two checkpoints' attention maps
on the same examples (e.g. before and after fine-tuning)."""

import torch

from . import plots
from .attention_maps import SparsityStats, iterate_maps
from .drift import DriftAccumulator
from .outputs import write_figure, write_json
from .report_common import example_batches, load_setup, out_path, run_info


def run(args):
    second = load_setup(args, args.finetuned)
    first = load_setup(args, args.pretrained)
    first.task = second.task  # the very same tokens for both checkpoints
    if (first.num_layers, first.num_heads) != (second.num_layers, second.num_heads):
        raise ValueError(
            f"the checkpoints differ in shape: {first.num_layers}x{first.num_heads} vs "
            f"{second.num_layers}x{second.num_heads} layers x heads"
        )
    batches = example_batches(second, args)
    pad = second.dictionary.pad()
    acc = DriftAccumulator(second.num_layers, second.num_heads)
    stats = [SparsityStats(second.num_layers, second.num_heads) for _ in range(2)]
    stream_a = iterate_maps(first.model, batches, pad, first.device, progress=False)
    stream_b = iterate_maps(
        second.model, batches, pad, second.device, progress=not args.no_progress, desc="maps of both checkpoints"
    )
    for (ia, _, maps_a), (ib, _, maps_b) in zip(stream_a, stream_b):
        assert ia == ib
        acc.update(maps_a, maps_b)
        stats[0].update(maps_a)
        stats[1].update(maps_b)
    mean = acc.mean()
    info = run_info(args, second, acc.n)
    info.update(
        checkpoint=None,
        pretrained=args.pretrained,
        finetuned=args.finetuned,
        attn_normalizer=[first.normalizer, second.normalizer],
    )
    result = {
        "run": info,
        "definition": "per head: cosine similarity of the flattened maps of the two checkpoints on the same "
        "example, mean over examples (1 = unchanged)",
        "cosine_mean": mean,
        "cosine_std": acc.std(),
        "cosine_min": acc.min,
        "per_layer_mean": mean.mean(dim=1),
        "overall_mean": float(mean.mean()),
        "least_similar_heads": [
            {"layer": int(i) // second.num_heads + 1, "head": int(i) % second.num_heads + 1, "cosine": float(v)}
            for v, i in zip(*torch.topk(-mean.reshape(-1), min(10, mean.numel())))
        ],
        "sparsity": {"pretrained": stats[0].to_json(), "finetuned": stats[1].to_json()},
    }
    for d in result["least_similar_heads"]:
        d["cosine"] = -d["cosine"]
    written = [
        write_figure(
            out_path(args, "drift.png"),
            plots.head_matrix(mean, "cosine similarity of attention maps, per head", "cosine", vmin=0, vmax=1),
        ),
        write_figure(
            out_path(args, "drift_layers.png"),
            plots.curves(
                "attention change per layer",
                "layer",
                "mean cosine similarity",
                [("mean over heads", list(range(1, second.num_layers + 1)), mean.mean(dim=1).tolist(), None)],
            ),
        ),
        write_json(out_path(args, "drift.json"), result),
    ]
    print("mean cosine per layer: " + ", ".join(f"{x:.3f}" for x in mean.mean(dim=1).tolist()))
    return written
