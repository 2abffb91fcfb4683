"""fairseq-sparse-analyze: what the attention heads of a classifier do (after Kovaleva et al. 2019).

    fairseq-sparse-analyze maps CKPT --data DIR --out-dir OUT [--examples 0 7] [--text "A sentence."]
    fairseq-sparse-analyze ablate CKPT --data DIR --out-dir OUT [--random-heads 1 6 12] [--greedy-steps 20]
    fairseq-sparse-analyze patterns CKPT --data DIR --out-dir OUT [--max-examples 100] [--cnn CNN.pt]
    fairseq-sparse-analyze label-maps CKPT --data DIR --out-dir OUT [--num-maps 200]
    fairseq-sparse-analyze train-cnn --maps OUT/maps.npz --labels OUT/labels.csv --out-dir OUT
    fairseq-sparse-analyze special-tokens CKPT --data DIR --out-dir OUT
    fairseq-sparse-analyze drift PRETRAINED FINETUNED --data DIR --out-dir OUT

CKPT is any sparse_roberta / stock roberta / converted BERT checkpoint; DIR a sentence_prediction
data-bin directory (input0/[input1/]label/). Each command writes JSON numbers and PNG pictures to
OUT. Layers and heads are numbered from 1 in the outputs, as in the paper.
"""
import argparse
import logging
import os
import sys

PROG = "fairseq-sparse-analyze"
FEATURES = ("vertical", "diagonal", "block")  # rule features stored with exported maps, for calibration
logger = logging.getLogger("fairseq_sparse.analyze")


# ----- arguments ---------------------------------------------------------------------------------
def _add_model_args(p, two_checkpoints=False):
    if two_checkpoints:
        p.add_argument("pretrained", metavar="PRETRAINED", help="first checkpoint (e.g. before fine-tuning)")
        p.add_argument("finetuned", metavar="FINETUNED", help="second checkpoint (e.g. after fine-tuning)")
    else:
        p.add_argument("checkpoint", metavar="CKPT", help="fairseq checkpoint (.pt)")
    p.add_argument("--data", required=True, help="sentence_prediction data-bin directory (input0/[input1/]label/)")
    p.add_argument("--split", default="valid", help="data split (default: valid)")
    p.add_argument("--out-dir", required=True, help="output directory (created if missing)")
    p.add_argument("--classification-head-name", default=None,
                   help="classification head to evaluate (default: the checkpoint's, else sentence_classification_head)")
    p.add_argument("--arch", default=None,
                   help="architecture to rebuild the checkpoint as (default: its own if it has sparse attention "
                        "modules, else sparse_roberta)")
    p.add_argument("--init-token", type=int, default=None, help="token put before each example (default: as "
                   "fine-tuned, else 0 = <s>/[CLS])")
    p.add_argument("--separator-token", type=int, default=None,
                   help="token put between the sentences of a pair, -1 for none (default: as fine-tuned, else "
                        "none for BERT WordPiece data, 2 for RoBERTa)")
    p.add_argument("--max-positions", type=int, default=None, help="truncate examples to this many tokens")
    p.add_argument("--model-overrides", default=None, metavar="DICT",
                   help="model options to replace, as a Python/JSON dict, e.g. \"{'attn_normalizer': 'sparsemax'}\"")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=1, help="seed of the example sample and random subsets")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_examples_arg(p, default):
    p.add_argument("--max-examples", type=int, default=default,
                   help=f"a seeded random sample of this many examples (default: {default or 'all'})")


def _add_threshold_args(p):
    from fairseq_sparse.analysis.patterns import PatternThresholds

    d = PatternThresholds()
    g = p.add_argument_group("rule-based pattern thresholds (see fairseq_sparse/analysis/patterns.py)")
    g.add_argument("--vertical-threshold", type=float, default=d.vertical, help="min [CLS]+[SEP] mass for vertical")
    g.add_argument("--diagonal-threshold", type=float, default=d.diagonal, help="min diagonal mass for diagonal")
    g.add_argument("--minor-threshold", type=float, default=d.minor,
                   help="the other feature must stay below this for a pure class; both above it for the mixed class")
    g.add_argument("--mixed-threshold", type=float, default=d.mixed, help="min V + D for vertical+diagonal")
    g.add_argument("--block-threshold", type=float, default=d.block, help="min own-sentence share for block")
    g.add_argument("--diagonal-offsets", type=int, nargs="+", default=list(d.offsets),
                   help="key offsets from the query that count as diagonal (default: -1 1)")


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("maps", help="attention maps of chosen examples as a layers x heads grid")
    _add_model_args(p)
    p.add_argument("--examples", type=int, nargs="+", default=None,
                   help="0-based example indices in the split (default: 0 unless --text is given)")
    p.add_argument("--text", action="append", default=[],
                   help="raw text to analyse instead (tokenised with the checkpoint's BPE; repeatable)")
    p.add_argument("--bpe-vocab-file", default=None,
                   help="WordPiece vocab.txt for --text (default: the BPE the checkpoint records, if any)")
    p.add_argument("--bpe-cased", action="store_true", help="cased WordPiece for --text")
    p.add_argument("--show-tokens", type=int, default=48, help="write token strings on the axes up to this length")
    p.add_argument("--save-maps", action="store_true", help="also write each example's maps as .npz")

    p = sub.add_parser("ablate", help="disable heads / layers (uniform attention) and score the dev set")
    _add_model_args(p)
    _add_examples_arg(p, None)
    p.add_argument("--metric", default=None, help="accuracy, f1, macro_f1, mcc; pearson, spearman for regression")
    p.add_argument("--random-heads", type=int, nargs="+", default=[], metavar="K",
                   help="also disable K random heads at once, for each K")
    p.add_argument("--random-trials", type=int, default=10, help="random subsets per K (default 10)")
    p.add_argument("--greedy-steps", type=int, default=0,
                   help="greedy pruning steps (remove the head that hurts least; -1 = all heads; default 0 = off)")
    p.add_argument("--greedy-candidates", type=int, default=0,
                   help="lazy greedy: re-evaluate only this many best-ranked heads per step (default 0 = all)")
    p.add_argument("--cache-mb", type=int, default=2048, help="memory for cached layer inputs (default 2048)")

    p = sub.add_parser("patterns", help="classify head maps into the five pattern classes")
    _add_model_args(p)
    _add_examples_arg(p, 100)
    _add_threshold_args(p)
    p.add_argument("--cnn", default=None, help="also classify with a CNN from `train-cnn` and report agreement")

    p = sub.add_parser("label-maps", help="export maps to label by hand (PNGs, maps.npz, labels.csv template)")
    _add_model_args(p)
    _add_examples_arg(p, 100)
    _add_threshold_args(p)
    p.add_argument("--num-maps", type=int, default=200, help="maps to export (random (example, layer, head))")
    p.add_argument("--image-size", type=int, default=32, help="side of the CNN input image (default 32)")
    p.add_argument("--sheet-size", type=int, default=20, help="maps per contact sheet (default 20)")

    p = sub.add_parser("train-cnn", help="train the pattern CNN on labelled maps; agreement with the rules")
    p.add_argument("--maps", required=True, help="maps.npz written by label-maps")
    p.add_argument("--labels", required=True, help="labels.csv with the label column filled in")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds for the agreement (default 5)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")

    p = sub.add_parser("special-tokens", help="attention to [CLS], [SEP] and punctuation per head")
    _add_model_args(p)
    _add_examples_arg(p, 1000)

    p = sub.add_parser("drift", help="per-head cosine similarity of two checkpoints' maps")
    _add_model_args(p, two_checkpoints=True)
    _add_examples_arg(p, 1000)
    return parser


# ----- shared steps ------------------------------------------------------------------------------
def _set_threads(args):
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)


def _load(args, checkpoint):
    from fairseq_sparse.analysis import load_for_analysis

    _set_threads(args)

    overrides = None
    if args.model_overrides:
        import ast

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


def _batches(setup, args, indices=None):
    from fairseq_sparse.analysis.examples import make_batches, select_indices

    dataset = setup.task.dataset(args.split)
    chosen = select_indices(len(dataset), getattr(args, "max_examples", None), args.seed, indices)
    return make_batches(dataset, chosen, args.batch_size)


def _typer(setup):
    from fairseq_sparse.analysis.examples import TokenTyper

    return TokenTyper(setup.dictionary, setup.init_token, setup.separator_token)


def _run_info(args, setup, n_examples):
    return {
        "command": " ".join([PROG] + list(args.argv)),
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


def _thresholds(args):
    from fairseq_sparse.analysis.patterns import PatternThresholds

    return PatternThresholds(vertical=args.vertical_threshold, diagonal=args.diagonal_threshold,
                             minor=args.minor_threshold, mixed=args.mixed_threshold, block=args.block_threshold,
                             offsets=tuple(args.diagonal_offsets))


def _path(args, name):
    os.makedirs(args.out_dir, exist_ok=True)
    return os.path.join(args.out_dir, name)


def _write_density(args, setup, stats, written):
    """A density heatmap only when the normaliser made exact zeros (softmax maps are dense)."""
    from fairseq_sparse.analysis import plots
    from fairseq_sparse.analysis.outputs import write_figure

    density = stats.density()
    if stats.rows and float(density.min()) < 1.0:
        written.append(write_figure(_path(args, "attention_density.png"), plots.head_matrix(
            density, f"non-zero share of attention weights ({setup.normalizer})", "density", vmin=0, vmax=1)))


# ----- commands ----------------------------------------------------------------------------------
def cmd_maps(args):
    import numpy as np
    import torch

    from fairseq_sparse.analysis import plots
    from fairseq_sparse.analysis.examples import Batch, select_indices
    from fairseq_sparse.analysis.outputs import write_figure, write_json, write_npz
    from fairseq_sparse.analysis.patterns import CLASSES, classify, map_features

    setup = _load(args, args.checkpoint)
    typer = _typer(setup)
    items = []  # (name, tokens, gold target or None, example index or None)
    dataset = setup.task.dataset(args.split)
    indices = args.examples if args.examples is not None else ([] if args.text else [0])
    for i in select_indices(len(dataset), indices=indices):
        sample = dataset[i]
        target = sample.get("target")
        items.append((f"{args.split}_{i}", sample["net_input.src_tokens"], target, i))
    for k, text in enumerate(args.text):
        items.append((f"text{k}", _encode_text(args, setup, text), None, None))
    written, report = [], []
    for name, tokens, target, index in items:
        tokens = tokens[: setup.task.cfg.max_positions]
        batch = Batch([0], tokens.unsqueeze(0))
        with torch.no_grad():
            maps = torch.stack([m[0].float().cpu() for m in setup.model.extract_attention(
                batch.src_tokens.to(setup.device))])
            prediction = None
            if setup.has_head:
                out = setup.model(batch.src_tokens.to(setup.device), features_only=True,
                                  classification_head_name=setup.head_name)[0][0]
                prediction = float(out[0]) if setup.regression else int(out.argmax())
        strings = typer.strings(tokens)
        types = typer.types(tokens)
        feats = map_features(maps, types)
        classes = classify(feats)
        entry = {
            "name": name, "index": index, "length": len(tokens), "tokens": strings,
            "label": _label(setup, target), "prediction": _label(setup, prediction),
            "rule_class": [[CLASSES[c] for c in row] for row in classes.tolist()],
            "vertical_mass": feats["vertical"], "diagonal_mass": feats["diagonal"],
            "zeros_share": (maps == 0).double().mean(dim=(-2, -1)),
        }
        report.append(entry)
        title = f"{name}: {len(tokens)} tokens" + (f", label {entry['label']}" if target is not None else "") + (
            f", predicted {entry['prediction']}" if prediction is not None else "")
        labelled = len(tokens) <= args.show_tokens  # long maps without labels: fewer pixels suffice
        written.append(write_figure(_path(args, f"maps_{name}.png"), plots.attention_grid(
            maps.numpy(), strings, title, args.show_tokens), dpi=90 if labelled else 60))
        if args.save_maps:
            written.append(write_npz(_path(args, f"maps_{name}.npz"), maps=maps.numpy().astype(np.float32),
                                     tokens=np.array(strings)))
    written.append(write_json(_path(args, "maps.json"), {"run": _run_info(args, setup, len(items)), "examples": report}))
    return written


def _label(setup, value):
    if value is None:
        return None
    if hasattr(value, "reshape"):
        value = value.reshape(-1)[0].item()
    if setup.regression:
        return float(value)
    names = setup.label_names
    return names[int(value)] if names and 0 <= int(value) < len(names) else int(value)


def _encode_text(args, setup, text):
    """Raw text -> token ids with --bpe-vocab-file (WordPiece) or the BPE the checkpoint records."""
    import argparse as ap

    import torch
    from fairseq.data import encoders

    from fairseq_sparse.analysis.loading import checkpoint_sections, read_checkpoint
    from fairseq_sparse.data import bert_wordpiece_bpe  # noqa: F401  (registers bert_wordpiece)

    if args.bpe_vocab_file:
        opts = {"bpe": "bert_wordpiece", "bpe_vocab_file": args.bpe_vocab_file, "bpe_cased": args.bpe_cased}
    else:
        opts, _, _ = checkpoint_sections(read_checkpoint(args.checkpoint))
    if not opts.get("bpe"):
        raise ValueError(f"--text needs a tokenizer, but {args.checkpoint!r} records no BPE; pass --bpe-vocab-file "
                         "(a WordPiece vocab.txt) or binarise the text into --data")
    try:
        bpe = encoders.build_bpe(ap.Namespace(**opts))
    except Exception as err:
        raise ValueError(f"cannot build the BPE {opts.get('bpe')!r} for --text: {err}") from None
    ids = setup.dictionary.encode_line(bpe.encode(text), append_eos=True, add_if_not_exist=False).long()
    return torch.cat([torch.tensor([setup.init_token]), ids]) if setup.init_token is not None else ids


def cmd_ablate(args):
    import numpy as np

    from fairseq_sparse.analysis import plots
    from fairseq_sparse.analysis.ablation import AblationEvaluator
    from fairseq_sparse.analysis.outputs import write_figure, write_json

    setup = _load(args, args.checkpoint)
    batches = _batches(setup, args)
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
        "run": _run_info(args, setup, len(ev.gold)),
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
    written.append(write_figure(_path(args, "ablate_heads.png"), plots.head_matrix(
        head_score - intact.score, f"{ev.metric} change when one head is disabled (intact {intact.score:.4f})",
        f"Δ {ev.metric}", diverging=True, fmt="{:+.3f}")))
    written.append(write_figure(_path(args, "ablate_layers.png"), plots.curves(
        "disabling one layer (all its heads uniform)", "disabled layer", ev.metric,
        [("layer disabled", list(range(1, L + 1)), layer_score.tolist(), None)], reference=("intact", intact.score))))
    if series:
        written.append(write_figure(_path(args, "ablate_pruning.png"), plots.curves(
            "removing several heads", "heads disabled", ev.metric, series, reference=("intact", intact.score))))
    written.append(write_json(_path(args, "ablate.json"), result))
    print(f"intact {ev.metric} {intact.score:.4f}; best single-head removal "
          f"{max(heads.values(), key=lambda e: e.score).score:.4f}; {len(improving)} of {L * H} heads improve it "
          f"when removed; worst layer removal {layer_score.min():.4f}")
    return written


def _pattern_pass(args, setup, thresholds, cnn=None):
    """Stream the maps once: rule-based counts, sparsity and, with a CNN, its classes of the same maps."""
    import numpy as np
    import torch

    from fairseq_sparse.analysis.attention_maps import SparsityStats, iterate_maps
    from fairseq_sparse.analysis.pattern_cnn import map_image, predict
    from fairseq_sparse.analysis.patterns import PatternCounter

    batches = _batches(setup, args)
    typer = _typer(setup)
    counter = PatternCounter(setup.num_layers, setup.num_heads, thresholds)
    cnn_counts = torch.zeros_like(counter.counts)
    stats = SparsityStats(setup.num_layers, setup.num_heads)
    rule_labels, cnn_labels = [], []
    for _, tokens, maps in iterate_maps(setup.model, batches, setup.dictionary.pad(), setup.device,
                                        progress=not args.no_progress):
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


def cmd_patterns(args):
    from fairseq_sparse.analysis import metrics, plots
    from fairseq_sparse.analysis.outputs import write_figure, write_json, write_text
    from fairseq_sparse.analysis.pattern_cnn import load_cnn
    from fairseq_sparse.analysis.patterns import CLASSES, PatternCounter, shares_table

    thresholds = _thresholds(args)
    cnn = load_cnn(args.cnn) if args.cnn else None
    setup = _load(args, args.checkpoint)
    counter, stats, cnn_result, n = _pattern_pass(args, setup, thresholds, cnn)
    per_layer, overall = counter.shares()
    majority = counter.majority()
    feats = counter.mean_features()
    result = {
        "run": _run_info(args, setup, n),
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
            "agreement_with_rules": {"accuracy": metrics.accuracy(rule, net),
                                     "cohen_kappa": metrics.cohen_kappa(rule, net, len(CLASSES))},
            "share_per_layer": {CLASSES[c]: c_layer[:, c] for c in range(len(CLASSES))},
            "share_overall": {CLASSES[c]: c_all[c] for c in range(len(CLASSES))},
            "head_majority_class": [[CLASSES[c] for c in row] for row in cnn_counter.majority().tolist()],
            "table": shares_table(c_layer, c_all),
        }
        written.append(write_figure(_path(args, "patterns_cnn_shares.png"), plots.class_shares(
            c_layer, c_all, f"pattern classes by the CNN ({n} examples)")))
        print(f"CNN vs rules: accuracy {result['cnn']['agreement_with_rules']['accuracy']:.3f}, "
              f"kappa {result['cnn']['agreement_with_rules']['cohen_kappa']:.3f}")
    written.append(write_figure(_path(args, "patterns_shares.png"), plots.class_shares(
        per_layer, overall, f"pattern classes (rule-based) over {int(counter.counts.sum())} maps, {n} examples")))
    written.append(write_figure(_path(args, "patterns_heads.png"), plots.class_grid(
        majority, "each head's most frequent class (rule-based)")))
    written.append(write_figure(_path(args, "patterns_features.png"), plots.head_matrix(
        feats["vertical"], "mean [CLS]+[SEP] (vertical) mass", "mass", vmin=0, vmax=1)))
    written.append(write_figure(_path(args, "patterns_diagonal.png"), plots.head_matrix(
        feats["diagonal"], f"mean diagonal mass (offsets {list(thresholds.offsets)})", "mass", vmin=0, vmax=1)))
    _write_density(args, setup, stats, written)
    written.append(write_text(_path(args, "patterns.md"), result["table"] + "\n"))
    written.append(write_json(_path(args, "patterns.json"), result))
    print(result["table"])
    return written


def cmd_label_maps(args):
    import random

    import numpy as np

    from fairseq_sparse.analysis import plots
    from fairseq_sparse.analysis.examples import select_indices
    from fairseq_sparse.analysis.outputs import write_csv, write_figure, write_json, write_npz
    from fairseq_sparse.analysis.pattern_cnn import LABEL_COLUMNS, map_image
    from fairseq_sparse.analysis.patterns import CLASSES

    if args.num_maps < 1:
        raise ValueError(f"--num-maps must be >= 1, got {args.num_maps}")
    thresholds = _thresholds(args)
    setup = _load(args, args.checkpoint)
    dataset = setup.task.dataset(args.split)
    examples = select_indices(len(dataset), args.max_examples, args.seed)
    rng = random.Random(args.seed)
    every = [(i, l, h) for i in examples for l in range(setup.num_layers) for h in range(setup.num_heads)]
    keep = {}
    for i, l, h in sorted(rng.sample(every, min(args.num_maps, len(every)))):
        keep.setdefault(i, []).append((l, h))
    kept = _maps_to_label(args, setup, thresholds, keep)
    written = []
    os.makedirs(_path(args, "maps"), exist_ok=True)
    rows, images, sheet_images, rules, features = [], [], [], [], []
    for map_id, (index, layer, head, attention, tokens, rule, feats) in enumerate(kept):
        png = os.path.join("maps", f"map_{map_id:04d}.png")
        written.append(write_figure(_path(args, png), plots.single_map(
            attention.numpy(), tokens, f"map {map_id}: example {index}, layer {layer + 1}, head {head + 1}",
            show_tokens=40), dpi=80))
        images.append(map_image(attention, args.image_size))
        sheet_images.append((attention / attention.max().clamp(min=1e-12)).numpy())
        rules.append(rule)
        features.append([feats[k] for k in FEATURES])
        rows.append([map_id, index, layer + 1, head + 1, png, ""])
    images = np.stack(images)
    for start in range(0, len(images), args.sheet_size):
        part = slice(start, start + args.sheet_size)
        written.append(write_figure(_path(args, f"sheet_{start // args.sheet_size:02d}.png"), plots.contact_sheet(
            sheet_images[part], [f"#{r[0]} L{r[2]}H{r[3]}" for r in rows[part]]), dpi=80))
    # the rule-based class stays out of the CSV, so it cannot sway the person labelling
    written.append(write_npz(_path(args, "maps.npz"), images=images, map_id=np.array([r[0] for r in rows]),
                             example=np.array([r[1] for r in rows]), layer=np.array([r[2] for r in rows]),
                             head=np.array([r[3] for r in rows]), rule_label=np.array(rules),
                             **{k: np.array(features)[:, i] for i, k in enumerate(FEATURES)}))
    written.append(write_csv(_path(args, "labels.csv"), LABEL_COLUMNS, rows))
    written.append(write_json(_path(args, "label_maps.json"), {
        "run": _run_info(args, setup, len(keep)), "maps": len(rows), "image_size": args.image_size,
        "classes": list(CLASSES), "thresholds": vars(thresholds),
        "how_to_label": "fill the 'label' column of labels.csv with a class name or v, d, vd, b, h "
                        "(look at the PNG in the 'png' column or the contact sheets); leave it blank to skip",
    }))
    print(f"exported {len(rows)} maps; fill the label column of {_path(args, 'labels.csv')}, then run "
          f"`{PROG} train-cnn --maps {_path(args, 'maps.npz')} --labels {_path(args, 'labels.csv')} --out-dir ...`")
    return written


def _maps_to_label(args, setup, thresholds, keep):
    from fairseq_sparse.analysis.attention_maps import iterate_maps
    from fairseq_sparse.analysis.patterns import classify, map_features

    batches = _batches(setup, args, indices=sorted(keep))
    typer = _typer(setup)
    kept = []
    for index, tokens, maps in iterate_maps(setup.model, batches, setup.dictionary.pad(), setup.device,
                                            progress=not args.no_progress):
        feats = map_features(maps, typer.types(tokens), thresholds.offsets)
        labels = classify(feats, thresholds)
        for layer, head in keep.get(index, []):
            kept.append((index, layer, head, maps[layer, head].clone(), typer.strings(tokens),
                         int(labels[layer, head]), {k: float(feats[k][layer, head]) for k in FEATURES}))
    kept.sort(key=lambda k: (k[0], k[1], k[2]))
    return kept


def cmd_train_cnn(args):
    import numpy as np

    from fairseq_sparse.analysis import metrics
    from fairseq_sparse.analysis.outputs import write_json
    from fairseq_sparse.analysis.pattern_cnn import (cross_validated_predictions, predict, read_labels, save_cnn,
                                                     train_cnn)
    from fairseq_sparse.analysis.patterns import CLASSES, calibrate

    _set_threads(args)
    if not os.path.isfile(args.maps):
        raise FileNotFoundError(f"--maps {args.maps!r} not found (written by `{PROG} label-maps`)")
    data = np.load(args.maps)
    for key in ("images", "map_id", "rule_label"):
        if key not in data:
            raise ValueError(f"{args.maps!r} lacks array {key!r}: not a maps.npz from `{PROG} label-maps`")
    labels = read_labels(args.labels)
    position = {int(m): i for i, m in enumerate(data["map_id"])}
    unknown = sorted(set(labels) - set(position))
    if unknown:
        raise ValueError(f"{args.labels!r} labels map ids {unknown[:10]} that {args.maps!r} does not contain")
    ids = sorted(labels)
    if len(ids) < max(args.folds, 2):
        raise ValueError(f"only {len(ids)} labelled maps in {args.labels!r}; label at least {max(args.folds, 2)}")
    rows = [position[i] for i in ids]
    images, human = data["images"][rows], np.array([labels[i] for i in ids])
    rules = data["rule_label"][rows]
    cv = cross_validated_predictions(images, human, folds=args.folds, seed=args.seed, epochs=args.epochs)
    model = train_cnn(images, human, epochs=args.epochs, seed=args.seed)
    all_rules, all_cnn = data["rule_label"], predict(model, data["images"]).numpy()

    def agree(a, b):
        return {"accuracy": metrics.accuracy(a, b), "cohen_kappa": metrics.cohen_kappa(a, b, len(CLASSES))}

    calibrated = None
    if all(k in data for k in FEATURES):  # refit the rule thresholds to the hand labels
        fitted, in_sample, rule_cv = calibrate({k: data[k][rows] for k in FEATURES}, human, folds=args.folds,
                                               seed=args.seed)
        calibrated = {
            "thresholds": {k: getattr(fitted, k) for k in ("vertical", "diagonal", "minor", "mixed", "block")},
            "rules_vs_human_in_sample": agree(in_sample.numpy(), human),
            "rules_vs_human_cross_validated": agree(rule_cv.numpy(), human),
            "confusion_human_rows_rule_columns": _confusion(human, in_sample.numpy()),
            "use_with": " ".join(f"--{k}-threshold {getattr(fitted, k)}"
                                 for k in ("vertical", "diagonal", "minor", "mixed")),
        }

    result = {
        "maps": args.maps, "labels": args.labels, "labelled_maps": len(ids), "folds": args.folds,
        "epochs": args.epochs, "seed": args.seed, "classes": list(CLASSES),
        "human_class_counts": {c: int((human == k).sum()) for k, c in enumerate(CLASSES)},
        "cnn_vs_human_cross_validated": agree(cv, human),
        "rules_vs_human": agree(rules, human),
        "cnn_cross_validated_vs_rules": agree(cv, rules),
        "final_cnn_vs_rules_all_exported_maps": agree(all_cnn, all_rules),
        "confusion_human_rows_cnn_columns": _confusion(human, cv),
        "confusion_human_rows_rule_columns": _confusion(human, rules),
        "rules_calibrated_to_human": calibrated,
    }
    written = [save_cnn(model, _path(args, "pattern_cnn.pt")), write_json(_path(args, "cnn_agreement.json"), result)]
    for name in ("cnn_vs_human_cross_validated", "rules_vs_human", "cnn_cross_validated_vs_rules"):
        print(f"{name}: accuracy {result[name]['accuracy']:.3f}, kappa {result[name]['cohen_kappa']:.3f}")
    if calibrated:
        cv = calibrated["rules_vs_human_cross_validated"]
        print(f"rules refitted to the labels ({calibrated['use_with']}): cross-validated accuracy "
              f"{cv['accuracy']:.3f}, kappa {cv['cohen_kappa']:.3f}")
    return written


def _confusion(gold, pred):
    from fairseq_sparse.analysis.patterns import CLASSES

    n = len(CLASSES)
    m = [[0] * n for _ in range(n)]
    for g, p in zip(gold, pred):
        m[int(g)][int(p)] += 1
    return m


def cmd_special_tokens(args):
    from fairseq_sparse.analysis import plots
    from fairseq_sparse.analysis.attention_maps import SparsityStats, iterate_maps
    from fairseq_sparse.analysis.outputs import write_figure, write_json
    from fairseq_sparse.analysis.special_tokens import SpecialTokenAttention

    setup = _load(args, args.checkpoint)
    batches = _batches(setup, args)
    typer = _typer(setup)
    acc = SpecialTokenAttention(setup.num_layers, setup.num_heads)
    stats = SparsityStats(setup.num_layers, setup.num_heads)
    for _, tokens, maps in iterate_maps(setup.model, batches, setup.dictionary.pad(), setup.device,
                                        progress=not args.no_progress):
        acc.update(maps, typer.types(tokens))
        stats.update(maps)
    scores = acc.scores()
    cls_row = acc.last_layer_cls_row()
    n = sum(len(b.indices) for b in batches)
    result = {
        "run": _run_info(args, setup, n),
        "definition": "per head and example: attention each key receives averaged over query rows, then the max "
                      "over keys of the type; averaged over the examples containing that type",
        "examples_with_type": acc.examples_with(),
        "scores": scores,
        "per_layer_mean": {k: v.mean(dim=1) for k, v in scores.items()},
        "last_layer_cls_row": {
            "definition": "mass the last layer's [CLS] query puts on each key type, per head, mean over examples",
            **cls_row},
        "sparsity": stats.to_json(),
    }
    written = []
    for name in ("cls", "sep", "punct", "other"):
        written.append(write_figure(_path(args, f"special_tokens_{name}.png"), plots.head_matrix(
            scores[name], f"attention to {name} keys (max over keys of mean over queries)", "attention",
            vmin=0, vmax=1)))
    written.append(write_figure(_path(args, "cls_row_last_layer.png"), plots.stacked_heads(
        cls_row, f"layer {setup.num_layers}: where the [CLS] query attends", "attention mass")))
    _write_density(args, setup, stats, written)
    written.append(write_json(_path(args, "special_tokens.json"), result))
    means = {k: float(v.mean()) for k, v in scores.items()}
    print("mean over heads: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    return written


def cmd_drift(args):
    import torch

    from fairseq_sparse.analysis import plots
    from fairseq_sparse.analysis.attention_maps import SparsityStats, iterate_maps
    from fairseq_sparse.analysis.drift import DriftAccumulator
    from fairseq_sparse.analysis.outputs import write_figure, write_json

    second = _load(args, args.finetuned)
    first = _load(args, args.pretrained)
    first.task = second.task  # the very same tokens for both checkpoints
    if (first.num_layers, first.num_heads) != (second.num_layers, second.num_heads):
        raise ValueError(f"the checkpoints differ in shape: {first.num_layers}x{first.num_heads} vs "
                         f"{second.num_layers}x{second.num_heads} layers x heads")
    batches = _batches(second, args)
    pad = second.dictionary.pad()
    acc = DriftAccumulator(second.num_layers, second.num_heads)
    stats = [SparsityStats(second.num_layers, second.num_heads) for _ in range(2)]
    stream_a = iterate_maps(first.model, batches, pad, first.device, progress=False)
    stream_b = iterate_maps(second.model, batches, pad, second.device, progress=not args.no_progress,
                            desc="maps of both checkpoints")
    for (ia, _, maps_a), (ib, _, maps_b) in zip(stream_a, stream_b):
        assert ia == ib
        acc.update(maps_a, maps_b)
        stats[0].update(maps_a)
        stats[1].update(maps_b)
    mean = acc.mean()
    info = _run_info(args, second, acc.n)
    info.update(checkpoint=None, pretrained=args.pretrained, finetuned=args.finetuned,
                attn_normalizer=[first.normalizer, second.normalizer])
    result = {
        "run": info,
        "definition": "per head: cosine similarity of the flattened maps of the two checkpoints on the same "
                      "example, mean over examples (1 = unchanged)",
        "cosine_mean": mean, "cosine_std": acc.std(), "cosine_min": acc.min,
        "per_layer_mean": mean.mean(dim=1), "overall_mean": float(mean.mean()),
        "least_similar_heads": [
            {"layer": int(i) // second.num_heads + 1, "head": int(i) % second.num_heads + 1, "cosine": float(v)}
            for v, i in zip(*torch.topk(-mean.reshape(-1), min(10, mean.numel())))
        ],
        "sparsity": {"pretrained": stats[0].to_json(), "finetuned": stats[1].to_json()},
    }
    for d in result["least_similar_heads"]:
        d["cosine"] = -d["cosine"]
    written = [
        write_figure(_path(args, "drift.png"), plots.head_matrix(
            mean, "cosine similarity of attention maps, per head", "cosine", vmin=0, vmax=1)),
        write_figure(_path(args, "drift_layers.png"), plots.curves(
            "attention change per layer", "layer", "mean cosine similarity",
            [("mean over heads", list(range(1, second.num_layers + 1)), mean.mean(dim=1).tolist(), None)])),
        write_json(_path(args, "drift.json"), result),
    ]
    print("mean cosine per layer: " + ", ".join(f"{x:.3f}" for x in mean.mean(dim=1).tolist()))
    return written


COMMANDS = {
    "maps": cmd_maps, "ablate": cmd_ablate, "patterns": cmd_patterns, "label-maps": cmd_label_maps,
    "train-cnn": cmd_train_cnn, "special-tokens": cmd_special_tokens, "drift": cmd_drift,
}


def run(argv=None):
    """Parse, run one command, print and return the files it wrote (main() minus the exit code)."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    args = build_parser().parse_args(argv)
    args.argv = argv
    import fairseq  # noqa: F401  (importing fairseq sets the root logger to DEBUG: reset it after)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("fairseq_sparse").setLevel(logging.INFO)
    import matplotlib

    matplotlib.use("Agg")
    try:
        written = COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"{PROG} {args.command}: error: {err}")
    for path in written:
        print(f"wrote {path}")
    return written


def main(argv=None):
    run(argv)


if __name__ == "__main__":
    main()
