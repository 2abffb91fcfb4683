"""The README's first command, end to end on real packaged data: scripts/run_demo.py --quick.

The summary's figures are recomputed from the files each step wrote (fine-tune results, TSV
files, analysis JSON, the fine-tuned checkpoint itself), so a step that reports the wrong run,
seed or head fails here. The rendering rules of summary.md are tested on hand-made summaries.
"""

import collections
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # the whole demo, --quick

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
sys.path.insert(0, str(REPO / "scripts"))

import demo_summary  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_demo.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def test_ssaf_table_holds_three_seeds_per_arm_recomputed_from_the_runs(demo):
    out, stdout = demo
    s = _summary(out)
    md = (out / "summary.md").read_text()
    runs = out / "ssaf" / "runs"
    for setting in ("softmax", "sparsegen_lin_-4"):
        rows = sorted((r for r in s["ssaf"]["runs"] if r["setting"] == setting), key=lambda r: r["seed"])
        assert [r["seed"] for r in rows] == [1, 2, 3], setting
        tests = []
        for r in rows:  # each row is that run's own results.json, not another seed's
            scores = json.loads((runs / f"{setting}_s{r['seed']}" / "results.json").read_text())["scores"]
            assert r["test_accuracy"] == round(scores["test"]["accuracy"], 2) and scores["test"]["examples"] == 48
            tests.append(scores["test"]["accuracy"])
        cell = (
            f"{statistics.mean(r['test_accuracy'] for r in rows):.2f} ± "
            f"{statistics.stdev(r['test_accuracy'] for r in rows):.2f}"
        )
        line = next(line for line in md.splitlines() if line.startswith(f"| {setting} | 3 |"))
        assert cell in line, (cell, line)
        assert re.search(rf"{setting}_s3: test accuracy [0-9.]+% on 48", stdout)
    # the majority class, recounted from the TSV files the step wrote
    labels = {
        split: [line.rsplit("\t", 1)[1] for line in (out / "ssaf" / "bbc" / f"{split}.tsv").read_text().splitlines()]
        for split in ("train", "test")
    }
    counts = collections.Counter(labels["train"])
    top = max(counts.values())
    majority = s["ssaf"]["majority_baseline"]
    assert counts[majority["label"]] == top
    assert majority["test_accuracy"] == round(100 * labels["test"].count(majority["label"]) / 48, 2)
    assert f"test set: {majority['test_accuracy']:.2f}% accuracy" in md


def test_every_comparison_says_whether_it_lies_within_the_spread(demo):
    out, _ = demo
    s = _summary(out)
    md = (out / "summary.md").read_text()
    acc = {
        k: [r["test_accuracy"] for r in s["ssaf"]["runs"] if r["setting"] == k] for k in ("softmax", "sparsegen_lin_-4")
    }
    for setting in ("sparsegen_lin_-4",):
        diff = statistics.mean(acc[setting]) - statistics.mean(acc["softmax"])
        within = abs(diff) < statistics.stdev(acc[setting]) + statistics.stdev(acc["softmax"])
        reading = "within the seeds' spread" if within else "beyond the seeds' spread"
        line = next(line for line in md.splitlines() if line.startswith(f"| {setting} | 3 |"))
        assert f"{diff:+.2f} ({reading})" in line, line
        assert f"{diff:+.2f} points of test accuracy ({reading}" in md  # the SSAF paper table too


def test_ablation_figures_recomputed_from_the_model(demo):
    """The summary's most harmful head, recomputed with that head made uniform by hand in the
    fine-tuned checkpoint the ssaf step wrote, on all 48 test articles."""
    from fairseq_sparse.analysis import load_for_analysis

    out, _ = demo
    ab = _summary(out)["analysis"]["ablation"]
    raw = json.loads((out / "analysis" / "ablate" / "ablate.json").read_text())
    assert ab["examples"] == 48 and ab["per_example_metric"] == "gold_logprob" and ab["resamples"] == 1000
    low, high = raw["heads"]["interval_low"], raw["heads"]["interval_high"]
    assert ab["heads_improving_beyond_interval"] == sum(x > 0 for row in low for x in row)
    assert ab["heads_hurting_beyond_interval"] == sum(x < 0 for row in high for x in row)
    run = out / "ssaf" / "runs" / "softmax_s1"
    setup = load_for_analysis(
        str(run / "checkpoints" / "checkpoint_best.pt"), str(run / "data"), split="test", device="cpu"
    )
    dataset = setup.task.dataset("test")
    sample = dataset.collater([dataset[i] for i in range(len(dataset))])
    gold = sample["target"].reshape(-1)

    def mean_gold_logprob():
        with torch.no_grad():
            logits = setup.model(
                sample["net_input"]["src_tokens"], features_only=True, classification_head_name=setup.head_name
            )[0]
        return float(torch.log_softmax(logits.double(), -1)[torch.arange(len(gold)), gold].mean())

    intact = mean_gold_logprob()
    assert ab["intact_per_example_mean"] == pytest.approx(intact, abs=1e-4)
    worst = ab["most_harmful_heads"][0]
    setup.attention_modules[worst["layer"] - 1].set_uniform_heads([worst["head"] - 1])
    assert worst["delta"] == pytest.approx(mean_gold_logprob() - intact, abs=1e-4)
    assert worst["delta"] == min(x for row in raw["heads"]["per_example_delta"] for x in row)


def test_paper_tables_and_their_verdicts(demo):
    out, _ = demo
    s = _summary(out)
    md = (out / "summary.md").read_text()
    for paper in demo_summary.PAPERS.values():
        assert f"### {paper}\n\n| finding | what the paper reported | what this run measured | reproduced? |" in md
    drift = json.loads((out / "analysis" / "drift" / "drift.json").read_text())["cosine_mean"]
    per_layer = [sum(row) / len(row) for row in drift]
    assert s["analysis"]["drift"]["per_layer_cosine"] == pytest.approx(per_layer, abs=1e-5)
    lowest = sorted(sorted(range(6), key=lambda i: per_layer[i])[:2])
    verdict = "yes" if lowest == [4, 5] else "no"
    softmax = next(r for r in s["ssaf"]["runs"] if r["setting"] == "softmax" and r["seed"] == 1)
    if softmax["test_accuracy"] <= s["ssaf"]["majority_baseline"]["test_accuracy"]:  # no finding without a model
        verdict = "not comparable: the fine-tuned softmax model does not beat the majority class"
    line = next(line for line in md.splitlines() if line.startswith("| fine-tuning changes the last layers most"))
    assert f"| {verdict}" in line and f"layers {lowest[0] + 1}, {lowest[1] + 1}" in line
    special = json.loads((out / "analysis" / "special-tokens" / "special_tokens.json").read_text())
    cls_row = special["last_layer_cls_row"]
    assert s["analysis"]["last_layer_cls_row"]["sep"] == pytest.approx(sum(cls_row["sep"]) / len(cls_row["sep"]))


def test_sparsebert_mask_is_not_empty(demo):
    sb = _summary(demo[0])["sparsebert"]
    assert sb["mask"]["density"] > 0 and sb["mask"]["empty_rows"] == 0


def test_summary_markdown_links_real_pictures(demo):
    out, _ = demo
    md = (out / "summary.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "analysis/ablate/ablate_heads.png" in links and any("drift" in p for p in links)
    for link in links:
        data = (out / link).read_bytes()
        assert data.startswith(PNG) and len(data) > 2000, link
    pictures = {str(p.relative_to(out)) for p in out.rglob("*.png")}
    assert {p for p in pictures if p.startswith("analysis/")} <= set(links)


def test_outputs_have_content(demo):
    out, stdout = demo
    for path in out.rglob("*.json"):
        assert json.loads(path.read_text()), path
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    assert all(f"== {n}" in stdout for n in ("sparsebert", "ssaf", "analysis"))
    # each fine-tune's result line is printed as that run ends, before the next step starts
    assert re.search(r"softmax_s1: test accuracy [0-9.]+% on \d+.*\n(.*\n)*== analysis", stdout), stdout[-3000:]
    log = (out / "ssaf" / "runs" / "sparsegen_lin_-4_s1" / "train.log").read_text()
    assert "attn_normalizer='sparsegen_lin'" in log and "sparsegen_lambda=-4.0," in log  # the paper's arm ran
    from fairseq_sparse.finetune.runner import fairseq_records  # train.log holds fairseq's JSON records

    densities = [float(v) for k, v in fairseq_records(log, "train")[-1].items() if k.startswith("attn_density_l")]
    assert len(densities) == 6 and 0 < max(densities) < 0.9, densities  # sparse attention in every layer


def test_rerun_resumes_without_redoing_work(demo):
    out, _ = demo
    before = (out / "summary.json").read_text()
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "run_demo.py"),
            "--quick",
            "--out",
            str(out),
            "--steps",
            "sparsebert",
            "analysis",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "$ " not in result.stdout and "done earlier" in result.stdout  # no command was run again
    after = json.loads((out / "summary.json").read_text())
    assert after["sparsebert"] == json.loads(before)["sparsebert"]


# ----- summary.md's rules, on hand-made summaries (no demo run) ------------------------------------
def test_compare_arms_reads_the_spread():
    assert demo_summary.compare_arms([90, 91, 92], [80, 81, 82]) == (10, "beyond the seeds' spread")
    diff, reading = demo_summary.compare_arms([90, 92, 94], [87, 89, 91])
    assert diff == pytest.approx(3) and reading == "within the seeds' spread"  # 3 < 2 + 2
    assert demo_summary.compare_arms(90.0, 80.0) == (10, "spread unknown (1 seed)")
    assert demo_summary.compare_arms(None, [1, 2]) == (None, "not measured")
    assert demo_summary.mean_sd([1.0, 2.0, 3.0]) == "2.00 ± 1.00" and demo_summary.mean_sd(4) == "4.00 (1 seed)"


def test_sparsebert_table_renders_what_exists_and_says_not_measured():
    sb = {
        "unigram_bits": 10.2,
        "adapted_valid_bits": 6.9,
        "diagonal_keep_prob": 0.12,
        "diagonal_rank": 1,
        "mask": {"density": 0.31, "empty_rows": 0, "png": "sparsebert/m.png"},
        "arms": {"dense": [6.8, 6.9, 7.0], "learned": [7.0, 7.1, 7.2], "random": [7.6, 7.7, 7.8]},
    }
    rows = {r[0]: r for r in demo_summary.sparsebert_rows(sb)}
    diag = next(r for k, r in rows.items() if k.startswith("the diagonal"))
    assert "0.120, rank 1" in diag[2] and diag[3].startswith("yes")
    random = next(r for k, r in rows.items() if "random" in k)
    assert "random - learned = +0.600 bits (> 0: learned better; beyond the seeds' spread)" in random[2]
    assert random[3] == "yes"
    window = next(r for k, r in rows.items() if "window" in k)
    assert window[2:] == ("not measured", "not measured")
    md = "\n".join(demo_summary.sparsebert_section(sb))
    assert "| learned mask density (after ? search updates) | 0.310 |" in md
    assert "| adapted MiniLM, valid MLM bits" in md
    assert "window | not measured |" in md and "![learned mask per head](sparsebert/m.png)" in md
    sb["diagonal_rank"] = 4
    assert next(r for r in demo_summary.sparsebert_rows(sb) if r[0].startswith("the diagonal"))[3].startswith(
        "no (rank 4)"
    )


def test_no_verdict_from_a_model_that_has_not_learned_its_task():
    runs = [
        {
            "setting": k,
            "seed": seed,
            "valid_accuracy": 50.0,
            "test_accuracy": acc,
            "test_examples": 10,
            "test_attention_density": 1.0,
            "seconds": 1,
        }
        for k, accs in (("softmax", (30.0, 60.0, 70.0)), ("sparsegen_lin_-4", (80.0, 81.0, 82.0)))
        for seed, acc in zip((1, 2, 3), accs)
    ]
    ss = {"majority_baseline": {"label": "a", "test_accuracy": 30.0}, "runs": runs}
    s = {"ssaf": ss, "analysis": {"drift": {"per_layer_cosine": [1.0, 0.99, 0.9, 0.8]}}}
    md = "\n".join(demo_summary.paper_tables(s))
    drift = next(line for line in md.splitlines() if line.startswith("| fine-tuning changes the last layers"))
    assert drift.endswith(
        "| not comparable: the fine-tuned softmax model does not beat the majority class "
        "(30.00% vs 30.00% test accuracy) |"
    )  # the analysed model is seed 1's
    gain = next(line for line in md.splitlines() if line.startswith("| sparsegen-lin"))
    assert gain.endswith("| yes (MiniLM on BBC News, not BERT-base on the paper's sets) |")  # softmax mean 53.3
    runs[0]["test_accuracy"] = 31.0
    drift = next(line for line in demo_summary.paper_tables(s) if line.startswith("| fine-tuning"))
    assert drift.endswith("| yes |")
