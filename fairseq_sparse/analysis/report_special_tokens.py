"""`fairseq-sparse-analyze special-tokens`: attention to [CLS], [SEP], punctuation and other
tokens per head, and where the last layer's [CLS] query attends."""

from . import plots
from .attention_maps import SparsityStats, iterate_maps
from .outputs import write_figure, write_json
from .report_common import example_batches, load_setup, out_path, run_info, token_typer, write_density
from .special_tokens import SpecialTokenAttention


def run(args):
    setup = load_setup(args, args.checkpoint)
    batches = example_batches(setup, args)
    typer = token_typer(setup)
    acc = SpecialTokenAttention(setup.num_layers, setup.num_heads)
    stats = SparsityStats(setup.num_layers, setup.num_heads)
    for _, tokens, maps in iterate_maps(
        setup.model, batches, setup.dictionary.pad(), setup.device, progress=not args.no_progress
    ):
        acc.update(maps, typer.types(tokens))
        stats.update(maps)
    scores = acc.scores()
    cls_row = acc.last_layer_cls_row()
    n = sum(len(b.indices) for b in batches)
    result = {
        "run": run_info(args, setup, n),
        "definition": "per head and example: attention each key receives averaged over query rows, then the max "
        "over keys of the type; averaged over the examples containing that type",
        "examples_with_type": acc.examples_with(),
        "scores": scores,
        "per_layer_mean": {k: v.mean(dim=1) for k, v in scores.items()},
        "last_layer_cls_row": {
            "definition": "mass the last layer's [CLS] query puts on each key type, per head, mean over examples",
            **cls_row,
        },
        "sparsity": stats.to_json(),
    }
    written = []
    for name in ("cls", "sep", "punct", "other"):
        written.append(
            write_figure(
                out_path(args, f"special_tokens_{name}.png"),
                plots.head_matrix(
                    scores[name],
                    f"attention to {name} keys (max over keys of mean over queries)",
                    "attention",
                    vmin=0,
                    vmax=1,
                ),
            )
        )
    written.append(
        write_figure(
            out_path(args, "cls_row_last_layer.png"),
            plots.stacked_heads(cls_row, f"layer {setup.num_layers}: where the [CLS] query attends", "attention mass"),
        )
    )
    write_density(args, setup, stats, written)
    written.append(write_json(out_path(args, "special_tokens.json"), result))
    means = {k: float(v.mean()) for k, v in scores.items()}
    print("mean over heads: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    return written
