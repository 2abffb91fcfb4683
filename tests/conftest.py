"""Shared fixtures: a tiny real corpus binarised by fairseq-preprocess, and a fairseq-train runner."""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_sparse")
BIN = Path(sys.executable).parent


def run_cli(args, cwd=None, check=True, env=None, timeout=600):
    """Run a console script (fairseq-train, fairseq-preprocess, ...) of this venv, return its result."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **(env or {}))
    result = subprocess.run(
        [str(BIN / args[0])] + [str(a) for a in args[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args[0]} failed (rc={result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def write_corpus(path, n_docs, seed, vocab=40):
    """Documents of 'sentences' over a small vocabulary with a learnable pattern (w_i is followed by w_{i+1})."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_docs):
        for _ in range(rng.randint(2, 4)):
            start = rng.randrange(vocab)
            length = rng.randint(6, 18)
            lines.append(" ".join(f"w{(start + j) % vocab}" for j in range(length)))
        lines.append("")
    Path(path).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def mlm_data(tmp_path_factory):
    """A binarised masked-LM data directory (train/valid) with its dict.txt."""
    root = tmp_path_factory.mktemp("mlm")
    write_corpus(root / "train.txt", 120, seed=1)
    write_corpus(root / "valid.txt", 20, seed=2)
    run_cli(
        [
            "fairseq-preprocess",
            "--only-source",
            "--trainpref",
            root / "train.txt",
            "--validpref",
            root / "valid.txt",
            "--destdir",
            root / "bin",
            "--workers",
            "1",
        ]
    )
    return root / "bin"


def tiny_mlm_args(data, save_dir, arch="sparse_roberta_tiny", updates=4, extra=()):
    return [
        "fairseq-train",
        data,
        "--user-dir",
        USER_DIR,
        "--cpu",
        "--task",
        "masked_lm",
        "--criterion",
        "masked_lm",
        "--arch",
        arch,
        "--tokens-per-sample",
        32,
        "--sample-break-mode",
        "complete_doc",
        "--batch-size",
        8,
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--lr-scheduler",
        "fixed",
        "--max-update",
        updates,
        "--log-format",
        "simple",
        "--log-interval",
        1,
        "--save-dir",
        save_dir,
        "--no-epoch-checkpoints",
        "--seed",
        3,
        "--num-workers",
        0,
        "--disable-validation",
        *[str(e) for e in extra],
    ]


@pytest.fixture(scope="session")
def cls_data(tmp_path_factory, mlm_data):
    """A binarised sentence_prediction directory (input0/, label/) sharing the masked-LM dictionary."""
    root = tmp_path_factory.mktemp("cls")
    rng = random.Random(5)
    for split, n in (("train", 64), ("valid", 16)):
        sents, labels = [], []
        for _ in range(n):
            label = rng.randrange(2)
            start = rng.randrange(20) + 20 * label  # class 0 uses w0..w19, class 1 w20..w39
            sents.append(" ".join(f"w{(start + j) % 40}" for j in range(rng.randint(4, 12))))
            labels.append(str(label))
        (root / f"{split}.input0").write_text("\n".join(sents) + "\n")
        (root / f"{split}.label").write_text("\n".join(labels) + "\n")
    run_cli(
        [
            "fairseq-preprocess",
            "--only-source",
            "--trainpref",
            root / "train.input0",
            "--validpref",
            root / "valid.input0",
            "--destdir",
            root / "bin" / "input0",
            "--srcdict",
            mlm_data / "dict.txt",
            "--workers",
            "1",
        ]
    )
    run_cli(
        [
            "fairseq-preprocess",
            "--only-source",
            "--trainpref",
            root / "train.label",
            "--validpref",
            root / "valid.label",
            "--destdir",
            root / "bin" / "label",
            "--workers",
            "1",
        ]
    )
    return root / "bin"
