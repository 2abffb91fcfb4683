"""The README's first command, end to end on real packaged data: scripts/run_demo.py --quick."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the whole demo, --quick

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "run_demo.py"), "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=1800, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


def test_summary_numbers(demo):
    out, stdout = demo
    s = json.loads((out / "summary.json").read_text())
    sb = s["sparsebert"]
    assert sb["wikipedia_documents"] == 200 and sb["corpus"]["train"]["documents"] > 100
    assert sb["corpus"]["valid"]["tokens"] > 0
    assert 0 <= sb["mask_density"] <= 1
    for key in ("search_valid_loss", "valid_mlm_loss_frozen_mask", "valid_mlm_loss_dense"):
        assert 0 < sb[key] < 20, key  # MLM loss in bits over a 30k vocabulary
    runs = {r["setting"]: r for r in s["ssaf"]["runs"]}
    assert sorted(runs) == ["schedule", "softmax", "sparsegen_lin_-4"]
    for r in runs.values():
        assert r["test_examples"] == 48 and 0 <= r["test_accuracy"] <= 100 and 0 <= r["valid_accuracy"] <= 100
    assert runs["softmax"]["test_attention_density"] > 0.99
    assert runs["sparsegen_lin_-4"]["test_attention_density"] < 0.9 and runs["schedule"]["test_attention_density"] < 0.99
    an = s["analysis"]
    assert sum(an["pattern_share_overall"].values()) == pytest.approx(1, abs=1e-3)
    assert {"cls", "sep"} <= set(an["special_token_attention_per_layer"])
    assert len(an["ablation"]["layer_delta"]) == 6 and len(an["ablation"]["most_harmful_heads"]) == 5
    assert len(an["drift"]["per_layer_cosine"]) == 6 and all(-1 <= c <= 1.0001 for c in an["drift"]["per_layer_cosine"])
    # progress came as it ran: every step announced, training epochs and each fine-tune's scores streamed
    assert all(f"== {n}" in stdout for n in ("sparsebert", "ssaf", "analysis"))
    assert "epoch 001 | valid on 'valid' subset | loss" in stdout
    assert re.search(r"schedule_s1: test accuracy [0-9.]+% on 48, attention density 0\.\d+", stdout)


def test_summary_markdown_links_real_pictures(demo):
    out, _ = demo
    md = (out / "summary.md").read_text()
    s = json.loads((out / "summary.json").read_text())
    for r in s["ssaf"]["runs"]:  # the table carries the measured numbers
        assert f"| {r['setting']} | {r['valid_accuracy']:.2f} | {r['test_accuracy']:.2f} |" in md
    assert f"{s['sparsebert']['mask_density']:.3f}" in md and "| 1 |" in md  # mask density, pattern table
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "sparsebert/dam_mask.png" in links and any("ablate" in p for p in links) and any("drift" in p for p in links)
    for link in links:
        data = (out / link).read_bytes()
        assert data.startswith(PNG) and len(data) > 2000, link
    pictures = {str(p.relative_to(out)) for p in out.rglob("*.png")}
    assert {p for p in pictures if p.startswith("analysis/")} <= set(links)


def test_outputs_have_content(demo):
    out, _ = demo
    for path in out.rglob("*.json"):
        assert json.loads(path.read_text()), path
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    run = out / "ssaf" / "runs" / "schedule_s1"
    log = (run / "train.log").read_text()
    assert "sparsity_schedule_updates=2," in log  # the schedule ran, and reached its target alpha
    from fairseq_sparse.finetune.runner import fairseq_records  # train.log holds fairseq's JSON records

    assert fairseq_records(log, "train")[0]["entmax_alpha"] == 1.5


def test_rerun_resumes_without_redoing_work(demo):
    out, _ = demo
    before = (out / "summary.json").read_text()
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "run_demo.py"), "--quick", "--out", str(out),
                             "--steps", "sparsebert", "analysis"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "$ " not in result.stdout and "done earlier" in result.stdout  # no command was run again
    after = json.loads((out / "summary.json").read_text())
    assert after["sparsebert"] == json.loads(before)["sparsebert"]
