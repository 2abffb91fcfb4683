"""Attention statistics go through the criterion, so fairseq sums them over workers: 2 gloo
processes log the same attn_density_l* as 1 process with --update-freq 2 on the same batches."""

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import REPO, run_cli, tiny_mlm_args

pytestmark = pytest.mark.slow

TORCHRUN_SH = os.path.join(REPO, "scripts", "launch", "torchrun.sh")
STATS = ["attn_density_l0", "attn_support_l0", "attn_density_l1", "attn_support_l1"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _records(log):
    """fairseq's --log-format json train_inner records, one per update."""
    marker = "| train_inner | "
    return [json.loads(line.split(marker, 1)[1]) for line in log.splitlines() if marker + "{" in line]


def test_two_workers_log_the_density_of_both_batches(mlm_data, tmp_path):
    extra = [
        "--criterion",
        "masked_lm_sparse",
        "--attn-normalizer",
        "sparsemax",
        "--batch-size",
        "4",
        "--dropout",
        "0",
        "--attention-dropout",
        "0",
        "--log-format",
        "json",
    ]
    args = [str(a) for a in tiny_mlm_args(mlm_data, tmp_path / "two", updates=3, extra=extra)[1:]]  # no "fairseq-train"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(
        OMP_NUM_THREADS="1",
        PYTHON=sys.executable,
        LAUNCH_DEVICE="cpu",
        NPROC_PER_NODE="2",
        MASTER_PORT=str(_free_port()),
    )
    two = subprocess.Popen(
        [TORCHRUN_SH, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(tmp_path)
    )
    one = run_cli(tiny_mlm_args(mlm_data, tmp_path / "one", updates=3, extra=extra + ["--update-freq", "2"]))
    two_log = two.communicate(timeout=600)[0]
    assert two.returncode == 0, two_log[-4000:]
    assert "distributed init (rank 1)" in two_log

    one_records, two_records = _records(one.stdout + one.stderr), _records(two_log)
    assert len(one_records) == len(two_records) == 3, (one.stderr[-2000:], two_log[-2000:])
    for a, b in zip(one_records, two_records):
        assert float(a["loss"]) == float(b["loss"])  # the same batches, the same model
        assert [a[k] for k in STATS] == [b[k] for k in STATS]
        assert 0 < float(a["attn_density_l0"]) < 1  # sparsemax: zeros, yet every row keeps a key
