"""What results.json says and when it is reused (issue 18 item 5), without training: the metrics
against scikit-learn, fairseq's JSON log records, the shared-text warning, and a job whose training
and prediction are stood in for, to check reuse, the checkpoint fingerprint and atomic outputs."""

import json
import os
import random
import sys

import pytest
from sklearn.metrics import f1_score

from fairseq_sparse.convert import convert_bert
from fairseq_sparse.data.sentence_prediction_data import Example
from fairseq_sparse.finetune import job as job_module
from fairseq_sparse.finetune.compare import summary_table
from fairseq_sparse.finetune.data import data_warnings, overlap_with_train
from fairseq_sparse.finetune.evaluation import SplitOutput
from fairseq_sparse.finetune.job import FinetuneJob, finetune
from fairseq_sparse.finetune.metrics import classification_scores, majority_baseline
from fairseq_sparse.finetune.runner import condense, fairseq_records, run_logged
from fairseq_sparse.finetune.tabular import TableError

NAMES = ["a", "b", "c", "d"]


def test_scores_match_scikit_learn_with_a_class_never_seen_in_the_split():
    rng = random.Random(0)
    gold = [rng.choice([0, 0, 0, 1, 2]) for _ in range(60)]  # imbalanced; class 3 absent from gold ...
    pred = [g if rng.random() < 0.6 else rng.choice([0, 1]) for g in gold]  # ... and from the predictions
    got = classification_scores(gold, pred, NAMES)
    assert got["accuracy"] == pytest.approx(100 * sum(g == p for g, p in zip(gold, pred)) / 60)
    assert got["macro_f1"] == pytest.approx(100 * f1_score(gold, pred, average="macro"))
    per_class = f1_score(gold, pred, average=None, labels=[0, 1, 2])
    assert [got["per_class"][n]["f1"] for n in NAMES[:3]] == pytest.approx(list(100 * per_class))
    assert got["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": None, "support": 0}
    assert [got["per_class"][n]["support"] for n in NAMES] == [gold.count(k) for k in range(4)]


def test_majority_baseline_is_the_most_frequent_training_class():
    base = majority_baseline({"a": 3, "b": 5, "c": 5, "d": 0}, {"test": [1, 1, 2, 0]}, NAMES)
    assert base["label"] == "b"  # b and c tie: the first in class order
    assert base["test"] == {
        "accuracy": 50.0,
        "macro_f1": pytest.approx(100 * f1_score([1, 1, 2, 0], [1] * 4, average="macro")),
    }


LOG = """\
2026-12-06 05:00:01 | INFO | fairseq_cli.train | begin training
2026-12-06 05:00:02 | INFO | train_inner | {"epoch": 1, "update": 0.5, "loss": "2.31", "accuracy": "37.5", \
"attn_density_l0": "0.2", "attn_density_l1": "0.4", "attn_support_l0": "3", "wps": "900", "num_updates": "1", \
"lr": "5e-05"}
2026-12-06 05:00:03 | INFO | valid | {"epoch": 1, "valid_loss": "2.1", "valid_accuracy": "50", \
"valid_num_updates": "2", "valid_best_accuracy": "50"}
2026-12-06 05:00:04 | INFO | valid | {"epoch": 2, "valid_loss": "1.7", "valid_accuracy": "62.5", \
"valid_num_updates": "4", "valid_best_accuracy": "62.5"}
"""


def test_fairseq_json_log_is_read_as_records():
    valid = fairseq_records(LOG, "valid")
    assert [r["loss"] for r in valid] == [2.1, 1.7] and valid[-1]["best_accuracy"] == 62.5
    assert fairseq_records(LOG, "train_inner")[0]["attn_density_l1"] == 0.4
    lines = [condense(line) for line in LOG.splitlines()]
    assert lines[0] is None  # not a progress record
    assert lines[1] == (
        "train_inner | epoch 1 | update 1 | loss 2.31 | accuracy 37.5 | lr 5e-05 | attn_density(mean) 0.300"
    )
    assert lines[3] == "valid | epoch 2 | update 4 | loss 1.7 | accuracy 62.5 | best_accuracy 62.5"
    simple = "2026-12-06 05:00:02 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 2.1"
    assert condense(simple) == "valid | epoch 001 | valid on 'valid' subset | loss 2.1"  # other formats pass


def test_run_logged_condenses_and_keeps_a_failed_log_aside(tmp_path, capsys):
    line = LOG.splitlines()[1]
    ok = tmp_path / "ok.log"
    run_logged([sys.executable, "-c", f"print({line!r})"], str(ok))
    assert "  train_inner | epoch 1 | update 1 | loss 2.31" in capsys.readouterr().out and ok.read_text() == line + "\n"
    bad = tmp_path / "bad.log"
    with pytest.raises(RuntimeError, match=r"(?s)exit 3.*full log: .*bad\.log\.failed"):
        run_logged([sys.executable, "-c", "print('Traceback: boom'); raise SystemExit(3)"], str(bad))
    assert not bad.exists() and "boom" in (tmp_path / "bad.log.failed").read_text()  # never read as finished


def test_texts_shared_with_the_training_file_are_counted_and_warned():
    train = [Example("The  cat sat", None, "a", "t.tsv:1"), Example("dog", None, "b", "t.tsv:2")]
    test = [Example("x", None, "a", "e.tsv:1"), Example("the cat SAT", None, "b", "e.tsv:2")]
    found = overlap_with_train({"train": train, "valid": train[1:], "test": test})
    assert found == {
        "valid": {"examples": 1, "first": ["t.tsv:2", "t.tsv:2"]},
        "test": {"examples": 1, "first": ["e.tsv:2", "t.tsv:1"]},
    }
    meta = {
        "inputs": {"columns": [["0"], "-1", False, None, "utf-8"]},
        "splits": {"valid": 1, "test": 2},
        "overlap_with_train": found,
    }
    assert data_warnings(meta)[1] == (
        "1 of 2 test texts also occur in the training file (first: e.tsv:2 = t.tsv:1); "
        "the test score is not a held-out score"
    )


@pytest.fixture()
def stand_ins(monkeypatch):
    """Training and prediction replaced: the fake model predicts class 0 for every example."""
    calls = []

    def fake_train(cmd, log_path):
        calls.append("train")
        save_dir = cmd[cmd.index("--save-dir") + 1]
        open(os.path.join(save_dir, "checkpoint_best.pt"), "wb").close()
        return 0.0

    def fake_predict(checkpoint, data, splits, batch_size):
        calls.append("predict")
        meta = json.load(open(os.path.join(data, "meta.json")))
        out = {}
        for split in splits:
            gold = [int(line) for line in open(os.path.join(data, "raw", f"{split}.label"))]
            ids = [line.strip() for line in open(os.path.join(data, "raw", f"{split}.id"))]
            probs = [[0.7] + [0.3 / (meta["num_classes"] - 1)] * (meta["num_classes"] - 1) for _ in gold]
            out[split] = SplitOutput(ids, gold, probs, [])
        return out

    monkeypatch.setattr(job_module, "run_logged", fake_train)
    monkeypatch.setattr(job_module, "predict", fake_predict)
    monkeypatch.setattr(job_module, "best_valid_accuracy", lambda path: 50.0)
    return calls


@pytest.fixture()
def tiny_model(tmp_path):
    from test_convert import write_tiny_bert

    write_tiny_bert(str(tmp_path / "bert"))
    model_dir = str(tmp_path / "model")
    convert_bert(str(tmp_path / "bert"), model_dir, pooler_head="sentence_classification_head")
    return model_dir


def test_a_bad_file_stops_the_job_before_anything_is_written(tmp_path, tiny_model, stand_ins):
    (tmp_path / "train.tsv").write_text("the cat sat\tpos\na dog\tneg\n")
    (tmp_path / "test.csv").write_text("the cat sat\tpos\na dog\tneg\n")  # tabs in a .csv
    train = str(tmp_path / "train.tsv")
    job = FinetuneJob(
        train=train,
        valid=train,
        test=str(tmp_path / "test.csv"),
        checkpoint=tiny_model,
        out_dir=str(tmp_path / "out"),
        header=False,
    )
    with pytest.raises(TableError, match=r"test\.csv: no label column: .*pass --delimiter"):
        finetune(job, log=lambda *a: None)
    assert stand_ins == [] and not (tmp_path / "out").exists()


def test_results_are_reused_only_for_the_same_checkpoint_file(tmp_path, tiny_model, stand_ins, monkeypatch):
    model_dir = tiny_model
    rows = "the cat sat\tpos\na dog\tneg\nthe dog sat\tpos\n"
    files = {k: str(tmp_path / f"{k}.tsv") for k in ("train", "valid", "test")}
    for path in files.values():
        open(path, "w").write(rows)
    job = FinetuneJob(**files, checkpoint=model_dir, out_dir=str(tmp_path / "out"), header=False)
    results = finetune(job, log=lambda *a: None)
    assert stand_ins == ["train", "predict"]
    assert results["majority_baseline"]["label"] == "pos" and results["class_counts"]["test"] == {"neg": 1, "pos": 2}
    assert results["scores"]["test"]["accuracy"] == pytest.approx(100 / 3)  # class 0 = 'neg' on every example
    tsv = open(tmp_path / "out" / "predictions_test.tsv").read().splitlines()
    assert tsv[0] == "id\tlabel\tprediction\tp_neg\tp_pos" and tsv[1] == "test.tsv:1\tpos\tneg\t0.700000\t0.300000"
    assert results["overlap_with_train"]["test"]["examples"] == 3
    finetune(job, log=lambda *a: None)
    assert stand_ins == ["train", "predict"]  # the same job: reused
    # another model converted into the same directory: a new job, old results gone before it runs
    convert_bert(str(tmp_path / "bert"), model_dir)  # no pooler: other weights, same path
    stand_ins.clear()

    def dies(*args, **kwargs):
        raise RuntimeError("scoring died")

    monkeypatch.setattr(job_module, "predict", dies)
    with pytest.raises(RuntimeError, match="scoring died"):
        finetune(job, log=lambda *a: None)
    assert stand_ins == ["train"]
    assert not (tmp_path / "out" / "results.json").exists() and not (tmp_path / "out" / "predictions_test.tsv").exists()
    assert [f for f in os.listdir(tmp_path / "out") if f.startswith(".")] == []  # no temporary left behind


def test_summary_table_gives_mean_and_spread_over_seeds_and_reads_each_gap_with_it():
    def row(setting, seed, v, t, f):
        return dict(
            setting=setting,
            seed=seed,
            valid_accuracy=v,
            test_accuracy=t,
            test_macro_f1=f,
            test_majority_accuracy=25.0,
            test_attention_density=1.0 if setting == "softmax" else 0.5,
        )

    rows = [row("softmax", s, v, t, f) for s, v, t, f in ((1, 80, 70, 60), (2, 90, 74, 64))]
    rows += [row("entmax15", s, 80, t, 60) for s, t in ((1, 75), (2, 77))]  # +4.0, within 2.83 + 1.41
    rows += [row("sparsemax", s, 80, t, 60) for s, t in ((1, 81), (2, 81))]  # +9.0, beyond 2.83 + 0
    rows += [row("sparsegen_lin_0", 1, 80, 90, 60)]
    table = summary_table(rows).splitlines()
    assert table[2] == "| softmax | 2 | 85.00 ± 7.07 | 72.00 ± 2.83 | 62.00 ± 2.83 | 1.000 ± 0.000 |  |"
    assert table[3].endswith("| 76.00 ± 1.41 | 60.00 ± 0.00 | 0.500 ± 0.000 | +4.00 (within the seeds' spread) |")
    assert table[4].endswith("| +9.00 (beyond the seeds' spread) |")
    assert table[5] == "| sparsegen_lin_0 | 1 | 80.00 | 90.00 | 60.00 | 0.500 | +18.00 (spread unknown (1 seed)) |"
    assert "test accuracy 25.00%." in table[-1] and "standard deviations" in table[-1]


def test_predictions_and_density_do_not_depend_on_batching_or_padding(tmp_path, tiny_model):
    """A real one-epoch run (tiny BERT, sparsemax attention) scored in padded batches of 4; each test
    example is then run alone (no padding): its probabilities, and the density counted over real
    query-key pairs, must be the same."""
    import torch
    from fairseq import checkpoint_utils

    rng = random.Random(1)
    words = ["the", "cat", "sat", "on", "mat", "dog", "good", "bad", "movie", "is", "it"]
    for split, n in (("train", 12), ("valid", 4), ("test", 10)):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) + "\t" + "ab"[i % 2] for i in range(n)]
        (tmp_path / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    job = FinetuneJob(
        **{s: str(tmp_path / f"{s}.tsv") for s in ("train", "valid", "test")},
        checkpoint=tiny_model,
        out_dir=str(tmp_path / "out"),
        header=False,
        epochs=1,
        batch_size=4,
        lr=1e-3,
        fairseq_args=["--attn-normalizer", "sparsemax"],
    )
    results = finetune(job, log=lambda *a: None)
    rows = [line.split("\t") for line in open(tmp_path / "out" / "predictions_test.tsv").read().splitlines()[1:]]
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [results["checkpoint"]], arg_overrides={"data": str(tmp_path / "out" / "data")}
    )
    model = models[0].eval()
    task.load_dataset("test")
    dataset = task.dataset("test")
    nonzero, pairs = torch.zeros(2), 0
    with torch.no_grad():
        for i, row in enumerate(rows):
            sample = dataset.collater([dataset[i]])
            tokens = sample["net_input"]["src_tokens"]
            logits = model(
                **sample["net_input"], features_only=True, classification_head_name="sentence_classification_head"
            )[0]
            alone = torch.softmax(logits.double(), -1)[0].tolist()
            assert [float(p) for p in row[3:]] == pytest.approx(alone, abs=2e-6)
            maps = model.extract_attention(tokens)
            nonzero += torch.tensor([float((m > 0).sum()) for m in maps])
            pairs += tokens.shape[1] ** 2 * maps[0].shape[1]
    assert len(rows) == 10 and 0 < float(nonzero.sum()) < 2 * pairs  # sparsemax left zeros
    density = results["scores"]["test"]["attention_density_per_layer"]
    assert density == pytest.approx((nonzero / pairs).tolist(), abs=1e-4)
