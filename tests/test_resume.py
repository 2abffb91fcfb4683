"""An interrupted and resumed run reproduces the uninterrupted run exactly (issue 4)."""

import re

import pytest
import torch
from conftest import run_cli, tiny_mlm_args

import fairseq_sparse  # noqa: F401  (lets torch.load read fairseq checkpoints)


def losses_by_update(log):
    return {int(u): float(l) for l, u in re.findall(r"train_inner .*? loss=([0-9.]+),.*? num_updates=(\d+)", log)}


@pytest.mark.parametrize("normalizer", ["sparsegen_lin"])
def test_resume_after_k_updates_matches_uninterrupted(mlm_data, tmp_path, normalizer):
    k = 3
    extra = ["--attn-normalizer", normalizer, "--sparsegen-lambda", "-2", "--dropout", "0.1"]
    full = run_cli(tiny_mlm_args(mlm_data, tmp_path / "full", updates=2 * k, extra=extra))
    run_cli(tiny_mlm_args(mlm_data, tmp_path / "split", updates=k, extra=extra))
    resumed = run_cli(tiny_mlm_args(mlm_data, tmp_path / "split", updates=2 * k, extra=extra))
    full_losses = losses_by_update(full.stdout + full.stderr)
    resumed_losses = losses_by_update(resumed.stdout + resumed.stderr)
    assert sorted(resumed_losses) == list(range(k + 1, 2 * k + 1)), resumed.stderr[-2000:]
    for update in range(k + 1, 2 * k + 1):
        assert resumed_losses[update] == full_losses[update], (update, resumed_losses, full_losses)
    final_full = torch.load(tmp_path / "full" / "checkpoint_last.pt", map_location="cpu")["model"]
    final_split = torch.load(tmp_path / "split" / "checkpoint_last.pt", map_location="cpu")["model"]
    for name, value in final_full.items():
        assert torch.allclose(value, final_split[name], atol=1e-6, rtol=0), name
