"""The repository commands reproduce.py runs, and how: each one printed, logged, on a set number of threads,
stopping everything if it fails. Kept apart so reproduce.py reads as the experiment (what runs, from what,
in which order) and this file as the exact command lines (MiniLM's shape, the training schedule)."""

import os
import subprocess
import sys
import time

from fairseq_sparse.atomic_files import atomic_output
from fairseq_sparse.finetune.runner import fairseq_records

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
MINILM = [
    "--encoder-layers",
    6,
    "--encoder-embed-dim",
    384,
    "--encoder-ffn-embed-dim",
    1536,
    "--encoder-attention-heads",
    12,
    "--activation-fn",
    "gelu",
    "--layer-norm-eps",
    1e-12,
    "--max-positions",
    512,
    "--segment-embeddings",
    2,
]
TOKENS = 128  # block length of every MLM run (with <s>); masks are exported at this length


def run(cmd, log_path, threads=1):
    """Run one command with its output in log_path; stop everything if it fails."""
    cmd = [str(c) for c in cmd]
    print("$ " + " ".join(cmd), flush=True)
    start = time.time()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
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


def valid_bits(log):
    """The last validation MLM loss (bits per masked token) in a fairseq-train --log-format json log
    (masked_lm_dam's loss adds the mask penalty; its mlm_loss is the MLM part)."""
    found = fairseq_records(log, "valid")
    if not found:
        raise SystemExit("reproduce: no validation loss in the log")
    return float(found[-1].get("mlm_loss", found[-1]["loss"]))


def prepare_command(raw, corpus, vocab):
    """The repository's pipeline: wikiextractor-style text in `raw` -> one binarised WordPiece shard."""
    return [
        sys.executable,
        "scripts/prepare_pretraining_data.py",
        "--wiki-extracted",
        raw,
        "--out",
        corpus,
        "--num-shards",
        1,
        "--valid-fraction",
        0.05,
        "--kind",
        "wordpiece",
        "--wordpiece-vocab",
        vocab,
        "--workers",
        2,
        "--no-progress",
    ]


def train_command(data, save, restore, seed, updates, lr, arch_args, criterion, valid_batches, extra=()):
    """fairseq-train of MiniLM's shape from `restore` (optimizer, schedule, data order reset), validated at the end."""
    return [
        tool("fairseq-train"),
        data,
        "--user-dir",
        os.path.join(REPO, "fairseq_sparse"),
        "--cpu",
        "--task",
        "masked_lm",
        "--criterion",
        criterion,
        *arch_args,
        *MINILM,
        "--restore-file",
        restore,
        "--reset-optimizer",
        "--reset-dataloader",
        "--reset-meters",
        "--reset-lr-scheduler",
        "--tokens-per-sample",
        TOKENS,
        "--sample-break-mode",
        "complete",
        "--batch-size",
        8,
        "--optimizer",
        "adam",
        "--adam-betas",
        "(0.9,0.98)",
        "--lr",
        lr,
        "--lr-scheduler",
        "polynomial_decay",
        "--warmup-updates",
        max(1, updates // 10),
        "--total-num-update",
        updates,
        "--max-update",
        updates,
        "--max-valid-steps",
        valid_batches,
        "--validate-interval-updates",
        updates,
        "--log-format",
        "json",
        "--log-interval",
        10,
        "--save-dir",
        save,
        "--no-epoch-checkpoints",
        "--no-save-optimizer-state",
        "--num-workers",
        0,
        "--seed",
        seed,
        *extra,
    ]


def export_mask_command(checkpoint, mask_path):
    """fairseq-sparse-export-mask at TOKENS, the mask as .npy and .png (an empty row is reported, not refused)."""
    return [
        tool("fairseq-sparse-export-mask"),
        checkpoint,
        "--out",
        mask_path,
        "--png",
        mask_path[:-4] + ".png",
        "--length",
        TOKENS,
        "--allow-empty",
    ]


def finetune_command(bbc, checkpoint, minilm, out, ft, seed, flags):
    """fairseq-sparse-finetune on BBC News (bbc/{train,valid,test}.tsv) from `checkpoint`; `ft` as in BUDGETS."""
    return [
        tool("fairseq-sparse-finetune"),
        "--train",
        os.path.join(bbc, "train.tsv"),
        "--valid",
        os.path.join(bbc, "valid.tsv"),
        "--test",
        os.path.join(bbc, "test.tsv"),
        "--checkpoint",
        checkpoint,
        "--dict",
        os.path.join(minilm, "dict.txt"),
        "--vocab",
        os.path.join(minilm, "vocab.txt"),
        "--out-dir",
        out,
        "--epochs",
        ft["epochs"],
        "--batch-size",
        16,
        "--lr",
        1e-4,
        "--max-length",
        ft["max_length"],
        "--seed",
        seed,
        "--log-interval",
        10,
        "--cpu",
        *flags,
    ]
