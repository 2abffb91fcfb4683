"""GLUE: the official TSV layouts, preprocessing, a few fine-tuning updates with the task's own
metric at validation, and the GLUE-server prediction files.

The model is a random tiny BERT converted with fairseq-sparse-convert-bert, so the whole path
(converter -> WordPiece preprocessing -> --restore-file fine-tuning) is exercised.
"""

import importlib.util
import json
import math
import os
import random
import re

import pytest
from fairseq.data import Dictionary, data_utils
from test_convert import write_tiny_bert

from fairseq_sparse.convert import convert_bert
from fairseq_sparse.data import glue

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "the cat sat on mat dog good bad movie is it a".split()
TRAIN_ARGS = [
    "--cpu",
    "--max-update",
    "4",
    "--batch-size",
    "8",
    "--log-format",
    "simple",
    "--log-interval",
    "1",
    "--num-workers",
    "0",
    "--seed",
    "1",
    "--max-epoch",
    "2",
]


def script(rel):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], os.path.join(REPO, rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_glue(root, n=24, seed=0):
    """Every task's train/dev/test files with the columns and headers of the GLUE download."""
    r = random.Random(seed)

    def sent():
        return " ".join(r.choice(WORDS) for _ in range(r.randint(3, 7)))

    def write(task, name, header, rows):
        os.makedirs(os.path.join(root, task), exist_ok=True)
        with open(os.path.join(root, task, name + ".tsv"), "w", encoding="utf-8") as f:
            if header is not None:
                f.write(("\ufeff" if task == "MRPC" and name == "train" else "") + "\t".join(header) + "\n")
            for row in rows:
                f.write("\t".join(str(x) for x in row) + "\n")

    for split in ("train", "dev"):
        write("CoLA", split, None, [("gj04", i % 2, "" if i % 2 else "*", sent()) for i in range(n)])
        write("SST-2", split, ["sentence", "label"], [(sent(), i % 2) for i in range(n)])
        write(
            "MRPC",
            split,
            ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
            [(i % 2, 100 + i, 200 + i, sent(), sent()) for i in range(n)],
        )
        write(
            "STS-B",
            split,
            [
                "index",
                "genre",
                "filename",
                "year",
                "old_index",
                "source1",
                "source2",
                "sentence1",
                "sentence2",
                "score",
            ],
            [
                (i, "main-captions", "MSRvid", "2012test", i, "none", "none", sent(), sent(), f"{r.uniform(0, 5):.3f}")
                for i in range(n)
            ],
        )
        write(
            "QQP",
            split,
            ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
            [(i, 2 * i, 2 * i + 1, sent(), sent(), i % 2) for i in range(n)] + [(999, "broken row")],
        )
        write(
            "QNLI",
            split,
            ["index", "question", "sentence", "label"],
            [(i, sent() + " ?", sent(), ("entailment", "not_entailment")[i % 2]) for i in range(n)],
        )
        write(
            "RTE",
            split,
            ["index", "sentence1", "sentence2", "label"],
            [(i, sent(), sent(), ("entailment", "not_entailment")[i % 2]) for i in range(n)],
        )
    nli = ("entailment", "neutral", "contradiction")
    parse_cols = ["sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse"]
    write(
        "MNLI",
        "train",
        ["index", "promptID", "pairID", "genre", *parse_cols, "sentence1", "sentence2", "label1", "gold_label"],
        [
            (
                i,
                i,
                f"{i}e",
                "fiction",
                "( x )",
                "( y )",
                "(ROOT x)",
                "(ROOT y)",
                sent() + ' "quoted',
                sent(),
                nli[i % 3],
                nli[i % 3],
            )
            for i in range(n)
        ],
    )
    for dev in ("dev_matched", "dev_mismatched"):
        write(
            "MNLI",
            dev,
            [
                "index",
                "promptID",
                "pairID",
                "genre",
                *parse_cols,
                "sentence1",
                "sentence2",
                "label1",
                "label2",
                "label3",
                "label4",
                "label5",
                "gold_label",
            ],
            [
                (
                    i,
                    i,
                    f"{i}n",
                    "slate",
                    "( x )",
                    "( y )",
                    "(ROOT x)",
                    "(ROOT y)",
                    sent(),
                    sent(),
                    *([nli[i % 3]] * 5),
                    nli[i % 3],
                )
                for i in range(n // 2)
            ],
        )
    tests = {
        "CoLA": ["index", "sentence"],
        "SST-2": ["index", "sentence"],
        "MRPC": ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        "STS-B": ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"],
        "QQP": ["id", "question1", "question2"],
        "QNLI": ["index", "question", "sentence"],
        "RTE": ["index", "sentence1", "sentence2"],
    }
    for task, header in tests.items():
        rows = []
        for i in range(10):
            row = {"index": 500 + i, "id": 500 + i, "#1 ID": 1, "#2 ID": 2}
            rows.append([row.get(h, sent()) for h in header])
        write(task, "test", header, rows)
    mnli_test = ["index", "promptID", "pairID", "genre", *parse_cols, "sentence1", "sentence2"]
    for name in ("test_matched", "test_mismatched"):
        write("MNLI", name, mnli_test, [(700 + i, i, i, "g", "x", "y", "x", "y", sent(), sent()) for i in range(6)])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    write_tiny_bert(str(root / "bert"))
    convert_bert(str(root / "bert"), str(root / "ckpt"))
    write_glue(str(root / "GLUE"))
    return root


def test_readers_follow_official_layouts(setup):
    counts = {}
    for name in ("CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE"):
        task = glue.get_task(name)
        splits = glue.read_glue(str(setup / "GLUE"), task)
        counts[name] = {s: len(e) for s, e in splits.items()}
        train = splits["train"]
        assert all((e.text_b is not None) == (task.text_b is not None) for e in train)
        if task.regression:
            assert all(isinstance(e.label, float) and 0 <= e.label <= 5 for e in train)
        else:
            assert {e.label for e in train} == set(task.label_names)
        assert all(e.label is None for e in splits["test"])
        assert splits["test"][0].uid == ("700" if name == "MNLI" else "500")
    assert counts["QQP"]["train"] == 24  # the malformed row is skipped
    assert counts["MNLI"] == {"train": 24, "valid": 12, "valid1": 12, "test": 6, "test1": 6}
    mnli = glue.read_glue(str(setup / "GLUE"), glue.get_task("mnli"))
    assert mnli["train"][0].text_a.endswith('"quoted')  # no CSV quoting
    cola = glue.read_glue(str(setup / "GLUE"), glue.get_task("cola"))["train"]
    assert cola[0].label == "0" and " " in cola[0].text_a  # column 3 is the sentence, 1 the label
    with pytest.raises(ValueError, match="unknown GLUE task"):
        glue.get_task("SQuAD")
    with pytest.raises(FileNotFoundError, match="WNLI"):
        glue.read_glue(str(setup / "GLUE"), glue.GlueTask("WNLI", "a", "b", "c", ("0",), glue.STD, ("a", "b")))


def test_bad_rows_and_headers_name_the_line(tmp_path, caplog):
    rte = glue.get_task("RTE")
    path = tmp_path / "dev.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n")
    with pytest.raises(
        ValueError, match=r"dev.tsv line 3: label 'maybe' is not one of \('entailment', 'not_entailment'\)"
    ):
        glue.read_split(rte, str(path), labelled=True)
    path.write_text("index\tpremise\thypothesis\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(ValueError, match=r"no column 'sentence1' in header \['index', 'premise'"):
        glue.read_split(rte, str(path), labelled=True)
    path.write_text("index\tsentence1\tsentence2\tscore\n0\ta\tb\tfive\n")
    with pytest.raises(ValueError, match="line 2: score 'five' is not a number"):
        glue.read_split(glue.get_task("STS-B"), str(path), labelled=True)
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tshort row\n2\ta\tb\tentailment\n")
    with caplog.at_level("WARNING", logger="fairseq_sparse.data.glue"):
        examples = glue.read_split(rte, str(path), labelled=True)
    assert [e.uid for e in examples] == ["0", "2"]  # uid: row index (RTE dev has no id column)
    assert "skipped 1 malformed rows (fewer than 4 fields): lines 3" in caplog.text
    path.write_text("index\tsentence1\tsentence2\tlabel\n1\tshort row\n")
    with pytest.raises(ValueError, match="dev.tsv: no examples"):
        glue.read_split(rte, str(path), labelled=True)


def preprocess(setup, task):
    dest = setup / "data" / task
    script("examples/glue/preprocess.py").main(
        [
            "--glue-dir",
            str(setup / "GLUE"),
            "--task",
            task,
            "--dest",
            str(dest),
            "--bpe",
            "bert_wordpiece",
            "--bpe-vocab-file",
            str(setup / "ckpt" / "vocab.txt"),
            "--srcdict",
            str(setup / "ckpt" / "dict.txt"),
        ]
    )
    return dest


def finetune(setup, task, capfd, extra=()):
    with pytest.raises(SystemExit) as done:
        script("examples/glue/finetune.py").main(
            [
                "--task",
                task,
                "--data",
                str(setup / "data" / task),
                "--checkpoint",
                str(setup / "ckpt" / "model.pt"),
                "--save-dir",
                str(setup / "ck" / task),
                "--",
                *TRAIN_ARGS,
                *extra,
            ]
        )
    out = capfd.readouterr()
    assert done.value.code == 0, out.out[-3000:] + out.err[-3000:]
    valid = [line for line in (out.out + out.err).splitlines() if "valid on 'valid' subset" in line]
    assert valid, out.err[-3000:]
    return valid[-1]


def metric(line, name):
    return float(re.search(rf"\| {name} (-?[\d.]+)", line).group(1))


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # fairseq-train children: the tiny model gains nothing from threads


def test_cola_mcc_and_server_file(setup, capfd):
    dest = preprocess(setup, "CoLA")
    # class index k is label k, and the BERT layout has no separator token
    label_dict = Dictionary.load(str(dest / "label" / "dict.txt"))
    assert [label_dict[i] for i in range(label_dict.nspecial, len(label_dict))] == ["0", "1"]
    words = Dictionary.load(str(dest / "input0" / "dict.txt"))
    first = data_utils.load_indexed_dataset(str(dest / "input0" / "valid"), words)[0]
    dev0 = glue.read_glue(str(setup / "GLUE"), glue.get_task("CoLA"))["valid"][0].text_a
    assert words.string(first) == dev0 and first[-1] == words.eos()
    line = finetune(setup, "CoLA", capfd)
    assert "| mcc " in line and "| accuracy " in line
    predict = script("examples/glue/predict.py")
    # the last validation is checkpoint_last's: the same predictions give the same metrics, up to
    # fairseq's rounding of the logged values to one decimal
    last = str(setup / "ck" / "CoLA" / "checkpoint_last.pt")
    scores = predict.main(["--data", str(dest), "--checkpoint", last, "--split", "valid", "--cpu"])
    assert abs(scores["mcc"] - metric(line, "mcc")) <= 0.05 + 1e-9
    assert abs(scores["accuracy"] - metric(line, "accuracy")) <= 0.05 + 1e-9
    ckpt = str(setup / "ck" / "CoLA" / "checkpoint_best.pt")
    out = setup / "pred"
    predict.main(["--data", str(dest), "--checkpoint", ckpt, "--out-dir", str(out), "--cpu"])
    rows = (out / "CoLA.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 11
    assert [r.split("\t")[0] for r in rows[1:]] == [str(500 + i) for i in range(10)]
    assert {r.split("\t")[1] for r in rows[1:]} <= {"0", "1"}


def test_stsb_regression_pearson_spearman(setup, capfd):
    dest = preprocess(setup, "STS-B")
    assert (dest / "label" / "train.label").read_text().splitlines()[0] == repr(
        glue.read_glue(str(setup / "GLUE"), glue.get_task("STS-B"))["train"][0].label
    )
    line = finetune(setup, "STS-B", capfd)
    assert "| pearson " in line and "| spearman " in line and "accuracy" not in line
    scores = script("examples/glue/predict.py").main(
        [
            "--data",
            str(dest),
            "--checkpoint",
            str(setup / "ck" / "STS-B" / "checkpoint_last.pt"),
            "--split",
            "valid",
            "--cpu",
        ]
    )
    # the same predictions as the last validation; fairseq rounds to 0.1 (its "spearman" is scipy's "spearmanr")
    for name, logged in (("pearson", "pearson"), ("spearmanr", "spearman")):
        assert abs(scores[name] - metric(line, logged)) <= 0.05 + 1e-9, (name, scores, line)
    out = setup / "pred"
    script("examples/glue/predict.py").main(
        [
            "--data",
            str(dest),
            "--checkpoint",
            str(setup / "ck" / "STS-B" / "checkpoint_best.pt"),
            "--out-dir",
            str(out),
            "--cpu",
        ]
    )
    rows = (out / "STS-B.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[0] for r in rows] == [str(500 + i) for i in range(10)]
    scores = [float(r.split("\t")[1]) for r in rows]
    assert all(math.isfinite(x) for x in scores) and len(set(scores)) > 1  # one prediction per example


def test_mnli_pairs_and_task_flags(setup, capfd):
    dest = preprocess(setup, "MNLI")
    assert sorted(p for p in os.listdir(dest / "input1") if p.endswith(".idx")) == [
        "test.idx",
        "test1.idx",
        "train.idx",
        "valid.idx",
        "valid1.idx",
    ]
    assert sorted(p for p in os.listdir(dest / "label") if p.endswith(".idx")) == [
        "train.idx",
        "valid.idx",
        "valid1.idx",
    ]
    finetune_script = script("examples/glue/finetune.py")
    for task, expected in (
        ("MRPC", ["--report-acc-and-f1", "acc_and_f1"]),
        ("CoLA", ["--report-mcc", "mcc"]),
        ("MNLI", ["--num-classes", "3", "accuracy"]),
    ):
        if not (setup / "data" / task / "meta.json").exists():  # not left by an earlier test (xdist order)
            preprocess(setup, task)
        finetune_script.main(
            [
                "--task",
                task,
                "--data",
                str(setup / "data" / task),
                "--checkpoint",
                str(setup / "ckpt" / "model.pt"),
                "--save-dir",
                "x",
                "--dry-run",
            ]
        )
        cmd = capfd.readouterr().out
        assert all(e in cmd for e in expected), cmd
        assert "--layer-norm-eps 1e-12" in cmd and "--encoder-embed-dim 16" in cmd
        assert "--separator-token" not in cmd  # BERT: [CLS] A [SEP] B [SEP]


def test_pairs_get_bert_token_types(setup):
    """RTE as the fine-tuning command batches it: B is token type 1 for the converted BERT."""
    from test_convert import first_pair_segments

    dest = preprocess(setup, "RTE")
    got, expected = first_pair_segments(
        dest, setup / "ckpt" / "model.pt", json.load(open(dest / "meta.json"))["bert_layout"]
    )
    assert got == expected and 0 in got and 1 in got


def write_fake_gpt2(directory, words=WORDS):
    """encoder.json / vocab.bpe / dict.txt of a tiny byte-level BPE in GPT-2's file formats.

    Merges build every word of WORDS (with and without the leading-space marker), so encoded
    text maps to whole words, as with RoBERTa's real files.
    """
    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    os.makedirs(directory, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    merges = []
    for w in words:
        current = w[0]
        for ch in w[1:]:
            if (current, ch) not in merges:
                merges.append((current, ch))
            current += ch
        merges.append(("\u0120", w))  # after w is complete, so " w" becomes one token
    vocab = symbols + [a + b for a, b in merges if a + b not in symbols]
    encoder = {tok: i for i, tok in enumerate(dict.fromkeys(vocab))}
    with open(os.path.join(directory, "encoder.json"), "w") as f:
        json.dump(encoder, f)
    with open(os.path.join(directory, "vocab.bpe"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    with open(os.path.join(directory, "dict.txt"), "w") as f:
        f.write("".join(f"{i} 1\n" for i in encoder.values()))
    return directory


def assert_no_unk(dest):
    words = Dictionary.load(str(dest / "input0" / "dict.txt"))
    data = data_utils.load_indexed_dataset(str(dest / "input0" / "train"), words)
    assert len(data) > 0 and all(words.unk() not in data[i].tolist() for i in range(len(data)))


def test_gpt2_and_sentencepiece_tokenizers(setup, tmp_path):
    import sentencepiece as spm

    pre = script("examples/glue/preprocess.py")
    gpt2 = write_fake_gpt2(str(tmp_path / "gpt2"))
    pre.main(
        [
            "--glue-dir",
            str(setup / "GLUE"),
            "--task",
            "RTE",
            "--dest",
            str(tmp_path / "rte-gpt2"),
            "--bpe",
            "gpt2",
            "--gpt2-encoder-json",
            gpt2 + "/encoder.json",
            "--gpt2-vocab-bpe",
            gpt2 + "/vocab.bpe",
            "--srcdict",
            gpt2 + "/dict.txt",
            "--no-test",
        ]
    )
    meta = json.load(open(tmp_path / "rte-gpt2" / "meta.json"))
    assert meta["bert_layout"] is False  # RoBERTa pairs get --separator-token 2
    raw = (tmp_path / "rte-gpt2" / "raw" / "train.input0").read_text().split("\n")[0].split()
    dev0 = glue.read_glue(str(setup / "GLUE"), glue.get_task("RTE"), include_test=False)["train"][0].text_a
    assert len(raw) == len(dev0.split())  # one BPE token per word with these merges
    assert_no_unk(tmp_path / "rte-gpt2")

    sents = [e.text_a for e in glue.read_glue(str(setup / "GLUE"), glue.get_task("SST-2"), include_test=False)["train"]]
    (tmp_path / "spm.txt").write_text("\n".join(sents) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "spm.txt"),
        model_prefix=str(tmp_path / "spm"),
        vocab_size=24,
        model_type="unigram",
        bos_id=-1,
        eos_id=-1,
        minloglevel=2,
    )
    proc = spm.SentencePieceProcessor(model_file=str(tmp_path / "spm.model"))
    (tmp_path / "spm.dict").write_text("".join(f"{proc.id_to_piece(i)} 1\n" for i in range(1, proc.get_piece_size())))
    pre.main(
        [
            "--glue-dir",
            str(setup / "GLUE"),
            "--task",
            "SST-2",
            "--dest",
            str(tmp_path / "sst-spm"),
            "--bpe",
            "sentencepiece",
            "--sentencepiece-model",
            str(tmp_path / "spm.model"),
            "--srcdict",
            str(tmp_path / "spm.dict"),
        ]
    )
    assert_no_unk(tmp_path / "sst-spm")
    with pytest.raises(SystemExit, match="--bpe-vocab-file"):
        pre.main(
            [
                "--glue-dir",
                str(setup / "GLUE"),
                "--task",
                "SST-2",
                "--dest",
                str(tmp_path / "x"),
                "--bpe",
                "bert_wordpiece",
                "--srcdict",
                str(tmp_path / "spm.dict"),
            ]
        )
