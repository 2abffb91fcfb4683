"""The launch path: scripts/launch/torchrun.sh (and slurm.sbatch on top of it).

The real check: 2 processes talking gloo on the CPU through torchrun.sh must end with the same
parameters as 1 process with --update-freq 2 on the same data (the same 2 x 4 sequences per
update, gradients summed either by all-reduce or by accumulation). Stock fairseq RoBERTa, tiny.
"""

import os
import socket
import stat
import subprocess
import sys

import pytest
import torch
from _wiki_sample import load_articles, wikiextractor_doc

from fairseq_sparse.data.preprocess import binarize, clean, encode, tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCHRUN_SH = os.path.join(REPO, "scripts", "launch", "torchrun.sh")
SBATCH = os.path.join(REPO, "scripts", "launch", "slurm.sbatch")

TINY_ROBERTA = [
    "--task",
    "masked_lm",
    "--criterion",
    "masked_lm",
    "--arch",
    "roberta",
    "--encoder-layers",
    "2",
    "--encoder-embed-dim",
    "32",
    "--encoder-ffn-embed-dim",
    "64",
    "--encoder-attention-heads",
    "2",
    "--tokens-per-sample",
    "128",
    "--sample-break-mode",
    "complete_doc",
    "--batch-size",
    "4",
    "--optimizer",
    "adam",
    "--lr",
    "1e-3",
    "--lr-scheduler",
    "fixed",
    "--max-update",
    "4",
    "--dropout",
    "0",
    "--attention-dropout",
    "0",
    "--activation-dropout",
    "0",
    "--seed",
    "1",
    "--no-epoch-checkpoints",
    "--disable-validation",
    "--num-workers",
    "0",
    "--log-format",
    "simple",
    "--log-interval",
    "1",
]


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory):
    """A one-shard data-bin of real Wikipedia text, made with the preprocessing steps."""
    root = tmp_path_factory.mktemp("launch_data")
    (root / "wiki" / "AA").mkdir(parents=True)
    with open(root / "wiki" / "AA" / "wiki_00", "w", encoding="utf-8") as f:
        for i, (title, text) in enumerate(load_articles()[:150]):
            f.write(wikiextractor_doc(i, title, text))
    clean.run_clean(
        str(root / "clean"),
        [str(root / "wiki")],
        [],
        clean.CleanOptions(valid_fraction=0.05),
        workers=1,
        show_progress=False,
    )
    tokenizer.build_tokenizer(
        str(root / "tok"),
        "sentencepiece",
        tokenizer.training_files(str(root / "clean")),
        vocab_size=500,
        show_progress=False,
    )
    encode.run_encode(str(root / "clean"), str(root / "tok"), str(root / "enc"), workers=1, show_progress=False)
    report = binarize.run_binarize(str(root / "enc"), str(root / "tok"), str(root / "bin"), workers=1)
    return report["data"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "NODE_RANK", "NNODES"))
    }
    env.update(OMP_NUM_THREADS="1", PYTHON=sys.executable, **extra)
    return env


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_with_update_freq_2(data_bin, tmp_path):
    two = subprocess.Popen(
        [TORCHRUN_SH, data_bin, *TINY_ROBERTA, "--save-dir", str(tmp_path / "two")],
        env=_env(LAUNCH_DEVICE="cpu", NPROC_PER_NODE="2", MASTER_PORT=str(_free_port())),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(tmp_path),
    )
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "fairseq_cli.train",
            data_bin,
            *TINY_ROBERTA,
            "--cpu",
            "--update-freq",
            "2",
            "--save-dir",
            str(tmp_path / "one"),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(tmp_path),
    )
    two_log = two.communicate()[0]
    assert two.returncode == 0, two_log[-4000:]
    assert one.returncode == 0, one.stdout[-4000:]
    assert "distributed init (rank 1): env://" in two_log

    a = _load(tmp_path / "one" / "checkpoint_last.pt")
    b = _load(tmp_path / "two" / "checkpoint_last.pt")
    assert a["cfg"]["distributed_training"]["distributed_world_size"] == 1
    assert list(a["cfg"]["optimization"]["update_freq"]) == [2]
    assert b["cfg"]["distributed_training"]["distributed_world_size"] == 2
    assert b["cfg"]["distributed_training"]["distributed_backend"] == "gloo"
    assert list(b["cfg"]["optimization"]["update_freq"]) == [1]
    assert a["optimizer_history"][-1]["num_updates"] == b["optimizer_history"][-1]["num_updates"] == 4
    assert a["model"].keys() == b["model"].keys()
    diff = max((a["model"][k].float() - b["model"][k].float()).abs().max().item() for k in a["model"])
    assert diff <= 1e-5, f"parameters differ by {diff}"
    # The runs really trained: Adam's first moments are non-zero.
    moments = [s["exp_avg"] for s in b["last_optimizer_state"]["state"].values()]
    assert moments and any(m.abs().sum() > 0 for m in moments)


def _dry_run(*args, **env):
    return subprocess.run([TORCHRUN_SH, *args], env=_env(DRY_RUN="1", **env), capture_output=True, text=True)


def test_torchrun_sh_builds_the_rendezvous_and_rejects_bad_settings():
    proc = _dry_run(
        "DATA",
        "--arch",
        "roberta",
        LAUNCH_DEVICE="gpu",
        NNODES="2",
        NODE_RANK="1",
        MASTER_ADDR="node0",
        MASTER_PORT="1234",
        NPROC_PER_NODE="4",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "-m torch.distributed.run --nnodes 2 --nproc-per-node 4 --node-rank 1 --master-addr node0 "
        "--master-port 1234 --max-restarts 0 --no-python " + TORCHRUN_SH + " DATA --arch roberta"
    ) in proc.stdout
    proc = _dry_run(
        "DATA",
        LAUNCH_DEVICE="gpu",
        NNODES="2",
        NPROC_PER_NODE="8",
        RDZV_BACKEND="c10d",
        MASTER_ADDR="node0",
        RDZV_ID="job7",
    )
    assert "--rdzv-backend c10d --rdzv-endpoint node0:29500 --rdzv-id job7" in proc.stdout
    bad = [
        ({"NNODES": "2", "NODE_RANK": "2"}, "NODE_RANK=2 must be < NNODES=2"),
        ({"LAUNCH_DEVICE": "tpu"}, "LAUNCH_DEVICE must be gpu, cpu or auto, got 'tpu'"),
        ({"NPROC_PER_NODE": "two"}, "NPROC_PER_NODE must be a non-negative integer, got 'two'"),
        ({"RDZV_BACKEND": "etcd"}, "RDZV_BACKEND must be static or c10d"),
    ]
    for env, message in bad:
        proc = _dry_run("DATA", **{"LAUNCH_DEVICE": "cpu", "NPROC_PER_NODE": "1", **env})
        assert proc.returncode == 2 and message in proc.stderr, (env, proc.stderr)


def _executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_slurm_sbatch_starts_one_torchrun_per_node(tmp_path):
    """slurm.sbatch's glue, with stand-ins for srun (second node's task) and scontrol."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "scontrol", "#!/bin/sh\n[ \"$1 $2\" = 'show hostnames' ] && printf 'gpu-a\\ngpu-b\\n'\n")
    _executable(
        bin_dir / "srun",
        '#!/bin/sh\necho "srun $*" >&2\nwhile [ "${1#--}" != "$1" ]; do shift; done\nSLURM_NODEID=1 exec "$@"\n',
    )
    env = _env(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        DRY_RUN="1",
        LAUNCH_DEVICE="gpu",
        SLURM_JOB_NODELIST="gpu-[a-b]",
        SLURM_JOB_NUM_NODES="2",
        SLURM_JOB_ID="4242",
        SLURM_GPUS_ON_NODE="8",
        SLURM_SUBMIT_DIR=REPO,
        NODE_RANK="0",
    )
    proc = subprocess.run(
        ["bash", SBATCH, "DATA", "--arch", "roberta"], env=env, capture_output=True, text=True, cwd=str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    assert "srun --nodes=2 --ntasks-per-node=1 --kill-on-bad-exit=1" in proc.stderr
    assert "--nnodes 2 --nproc-per-node 8 --node-rank 1 --master-addr gpu-a --master-port 24242" in proc.stdout, (
        proc.stdout
    )
    assert proc.stdout.rstrip().endswith("DATA --arch roberta")
