"""`fairseq-sparse-analyze ablate`: the dev-set score with each head, each layer, random head
subsets and a greedy sequence of heads disabled (ablate.json and three pictures)."""
import numpy as np

from . import plots
from .ablation import AblationEvaluator
from .outputs import write_figure, write_json
from .report_common import example_batches, load_setup, out_path, run_info


def run(args):
    setup = load_setup(args, args.checkpoint)
    batches = example_batches(setup, args)
    ev = AblationEvaluator(setup, batches, metric=args.metric, cache_mb=args.cache_mb, progress=not args.no_progress)
    intact = ev.base_evaluation
    L, H = setup.num_layers, setup.num_heads
    heads = ev.single_heads()
    head_score = np.array([[heads[(l, h)].score for h in range(H)] for l in range(L)])
    layers = ev.layers()
    layer_score = np.array([e.score for e in layers])
    improving = sorted(
        ({"layer": l + 1, "head": h + 1, "delta": e.score - intact.score, "loss_delta": e.loss - intact.loss}
         for (l, h), e in heads.items() if e.score > intact.score), key=lambda d: -d["delta"])
    result = {
        "run": run_info(args, setup, len(ev.gold)),
        "method": "disabled head = uniform attention 1/L over the non-padded keys; disabled layer = all its heads; "
                  "no retraining",
        "metric": ev.metric,
        "intact": {"score": intact.score, "loss": intact.loss},
        "heads": {"score": head_score, "delta": head_score - intact.score,
                  "loss": [[heads[(l, h)].loss for h in range(H)] for l in range(L)]},
        "layers": {"score": layer_score, "delta": layer_score - intact.score, "loss": [e.loss for e in layers]},
        "improving_heads": improving,
        "share_heads_improving": len(improving) / (L * H),
        "mean_single_head_delta": float((head_score - intact.score).mean()),
    }
    written = []
    series = []
    if args.random_heads:
        rows = []
        for k, subsets, evals in ev.random_subsets(args.random_heads, args.random_trials, seed=args.seed):
            deltas = np.array([e.score - intact.score for e in evals])
            rows.append({"k": k, "trials": len(evals), "mean_delta": deltas.mean(), "std_delta": deltas.std(),
                         "min_delta": deltas.min(), "max_delta": deltas.max(),
                         "mean_score": np.mean([e.score for e in evals]),
                         "subsets": [[[l + 1, h + 1] for l, h in s] for s in subsets]})
        result["random"] = rows
        series.append((f"random heads (mean ± sd, {args.random_trials} trials)", [r["k"] for r in rows],
                       [r["mean_score"] for r in rows], [r["std_delta"] for r in rows]))
    if args.greedy_steps:
        curve = ev.greedy(args.greedy_steps, args.greedy_candidates, initial=heads)
        result["greedy"] = {
            "candidates_per_step": args.greedy_candidates or "all",
            "steps": [{"removed": [l + 1, h + 1], "heads_removed": i + 1, "score": e.score,
                       "delta": e.score - intact.score, "loss": e.loss, "evaluated": n}
                      for i, ((l, h), e, n) in enumerate(curve)],
        }
        series.insert(0, ("greedy (least harmful head first)", [0] + [i + 1 for i in range(len(curve))],
                          [intact.score] + [e.score for _, e, _ in curve], None))
    result["evaluations"] = ev.evaluations
    written.append(write_figure(out_path(args, "ablate_heads.png"), plots.head_matrix(
        head_score - intact.score, f"{ev.metric} change when one head is disabled (intact {intact.score:.4f})",
        f"Δ {ev.metric}", diverging=True, fmt="{:+.3f}")))
    written.append(write_figure(out_path(args, "ablate_layers.png"), plots.curves(
        "disabling one layer (all its heads uniform)", "disabled layer", ev.metric,
        [("layer disabled", list(range(1, L + 1)), layer_score.tolist(), None)], reference=("intact", intact.score))))
    if series:
        written.append(write_figure(out_path(args, "ablate_pruning.png"), plots.curves(
            "removing several heads", "heads disabled", ev.metric, series, reference=("intact", intact.score))))
    written.append(write_json(out_path(args, "ablate.json"), result))
    print(f"intact {ev.metric} {intact.score:.4f}; best single-head removal "
          f"{max(heads.values(), key=lambda e: e.score).score:.4f}; {len(improving)} of {L * H} heads improve it "
          f"when removed; worst layer removal {layer_score.min():.4f}")
    return written
