"""`fairseq-sparse-analyze ablate`: the dev-set score with each head, each layer, random head
subsets and a greedy sequence of heads disabled (ablate.json and four pictures).

Beside the task metric, every head and layer gets the change of the mean per-example score
(gold-label log-probability) with a paired bootstrap interval over the examples; a head "improves
the score beyond the interval" when the whole interval lies above 0.
"""

import numpy as np
import torch

from . import metrics, plots
from .ablation import AblationEvaluator
from .bootstrap import paired_intervals, resample_counts
from .outputs import write_figure, write_json
from .report_common import example_batches, load_setup, out_path, run_info


def _beyond(cells, sign):
    """Heads whose interval excludes 0 on the side `sign` (+1 improves, -1 hurts), largest change first."""
    chosen = [c for c in cells if (c["low"] > 0 if sign > 0 else c["high"] < 0)]
    return sorted(chosen, key=lambda c: -sign * c["delta"])


def run(args):
    setup = load_setup(args, args.checkpoint)
    batches = example_batches(setup, args)
    ev = AblationEvaluator(setup, batches, metric=args.metric, cache_mb=args.cache_mb, progress=not args.no_progress)
    intact = ev.base_evaluation
    L, H = setup.num_layers, setup.num_heads
    heads = ev.single_heads()
    order = [(l, h) for l in range(L) for h in range(H)]
    head_score = np.array([[heads[(l, h)].score for h in range(H)] for l in range(L)])
    layers = ev.layers()
    layer_score = np.array([e.score for e in layers])
    counts = resample_counts(len(ev.gold), args.bootstrap_resamples, args.seed)
    per_head = paired_intervals(
        intact.per_example, torch.stack([heads[lh].per_example for lh in order]), counts, args.confidence
    )
    per_layer = paired_intervals(
        intact.per_example, torch.stack([e.per_example for e in layers]), counts, args.confidence
    )
    cells = [
        {
            "layer": l + 1,
            "head": h + 1,
            "delta": float(per_head.delta[i]),
            "low": float(per_head.low[i]),
            "high": float(per_head.high[i]),
            "metric_delta": heads[(l, h)].score - intact.score,
        }
        for i, (l, h) in enumerate(order)
    ]
    per_example = metrics.per_example_name(setup.regression)
    improving = sorted(
        (
            {"layer": l + 1, "head": h + 1, "delta": e.score - intact.score, "loss_delta": e.loss - intact.loss}
            for (l, h), e in heads.items()
            if e.score > intact.score
        ),
        key=lambda d: -d["delta"],
    )
    beyond = {"improving": _beyond(cells, +1), "hurting": _beyond(cells, -1)}
    result = {
        "run": run_info(args, setup, len(ev.gold)),
        "method": "disabled head = uniform attention 1/L over the non-padded keys; disabled layer = all its heads; "
        "no retraining",
        "metric": ev.metric,
        "per_example_metric": per_example,
        "bootstrap": {
            "resamples": args.bootstrap_resamples,
            "seed": args.seed,
            "confidence": args.confidence,
            "definition": f"paired percentile bootstrap over the examples of the mean change of "
            f"{per_example} (disabled - intact), the same resamples for every head",
        },
        "intact": {"score": intact.score, "loss": intact.loss, "per_example_mean": intact.mean_per_example},
        "heads": {
            "score": head_score,
            "delta": head_score - intact.score,
            "loss": [[heads[(l, h)].loss for h in range(H)] for l in range(L)],
            "per_example_delta": per_head.delta.reshape(L, H),
            "interval_low": per_head.low.reshape(L, H),
            "interval_high": per_head.high.reshape(L, H),
        },
        "layers": {
            "score": layer_score,
            "delta": layer_score - intact.score,
            "loss": [e.loss for e in layers],
            "per_example_delta": per_layer.delta,
            "interval_low": per_layer.low,
            "interval_high": per_layer.high,
        },
        "improving_heads": improving,
        "share_heads_improving": len(improving) / (L * H),
        "mean_single_head_delta": float((head_score - intact.score).mean()),
        "heads_improving_beyond_interval": beyond["improving"],
        "heads_hurting_beyond_interval": beyond["hurting"],
    }
    written = []
    series = []
    if args.random_heads:
        rows = []
        for k, subsets, evals in ev.random_subsets(args.random_heads, args.random_trials, seed=args.seed):
            deltas = np.array([e.score - intact.score for e in evals])
            rows.append(
                {
                    "k": k,
                    "trials": len(evals),
                    "mean_delta": deltas.mean(),
                    "std_delta": deltas.std(),
                    "min_delta": deltas.min(),
                    "max_delta": deltas.max(),
                    "mean_score": np.mean([e.score for e in evals]),
                    "mean_per_example_delta": np.mean([e.mean_per_example - intact.mean_per_example for e in evals]),
                    "subsets": [[[l + 1, h + 1] for l, h in s] for s in subsets],
                }
            )
        result["random"] = rows
        series.append(
            (
                f"random heads (mean ± sd, {args.random_trials} trials)",
                [r["k"] for r in rows],
                [r["mean_score"] for r in rows],
                [r["std_delta"] for r in rows],
            )
        )
    if args.greedy_steps:
        curve = ev.greedy(args.greedy_steps, args.greedy_candidates, initial=heads)
        result["greedy"] = {
            "candidates_per_step": args.greedy_candidates or "all",
            "steps": [
                {
                    "removed": [l + 1, h + 1],
                    "heads_removed": i + 1,
                    "score": e.score,
                    "delta": e.score - intact.score,
                    "loss": e.loss,
                    "evaluated": n,
                }
                for i, ((l, h), e, n) in enumerate(curve)
            ],
        }
        series.insert(
            0,
            (
                "greedy (least harmful head first)",
                [0] + [i + 1 for i in range(len(curve))],
                [intact.score] + [e.score for _, e, _ in curve],
                None,
            ),
        )
    result["evaluations"] = ev.evaluations
    excludes_zero = ((per_head.low > 0) | (per_head.high < 0)).reshape(L, H).numpy()
    written.append(
        write_figure(
            out_path(args, "ablate_heads.png"),
            plots.head_matrix(
                per_head.delta.reshape(L, H),
                f"change of the mean {per_example} when one head is disabled "
                f"(* = {args.confidence:.0%} interval excludes 0)",
                f"Δ mean {per_example}",
                diverging=True,
                fmt="{:+.3f}",
                marks=excludes_zero,
            ),
        )
    )
    written.append(
        write_figure(
            out_path(args, f"ablate_heads_{ev.metric}.png"),
            plots.head_matrix(
                head_score - intact.score,
                f"{ev.metric} change when one head is disabled (intact {intact.score:.4f})",
                f"Δ {ev.metric}",
                diverging=True,
                fmt="{:+.3f}",
            ),
        )
    )
    delta = per_layer.delta.numpy()
    written.append(
        write_figure(
            out_path(args, "ablate_layers.png"),
            plots.curves(
                "disabling one layer (all its heads uniform)",
                "disabled layer",
                f"Δ mean {per_example}",
                [
                    (
                        f"change ({args.confidence:.0%} bootstrap interval)",
                        list(range(1, L + 1)),
                        delta.tolist(),
                        np.stack([delta - per_layer.low.numpy(), per_layer.high.numpy() - delta]),
                    )
                ],
                reference=("intact", 0.0),
            ),
        )
    )
    if series:
        written.append(
            write_figure(
                out_path(args, "ablate_pruning.png"),
                plots.curves(
                    "removing several heads", "heads disabled", ev.metric, series, reference=("intact", intact.score)
                ),
            )
        )
    written.append(write_json(out_path(args, "ablate.json"), result))
    print(
        f"intact {ev.metric} {intact.score:.4f}, mean {per_example} {intact.mean_per_example:.4f}; "
        f"{len(beyond['improving'])} of {L * H} heads improve the mean {per_example} beyond its "
        f"{args.confidence:.0%} interval when removed, {len(beyond['hurting'])} hurt it; {len(improving)} heads "
        f"improve {ev.metric}; worst layer removal {ev.metric} {layer_score.min():.4f}"
    )
    return written
