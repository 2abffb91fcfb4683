"""SQuAD: official EM/F1 on hand-made cases, feature windows, and the task/criterion end to end."""

import importlib.util
import json
import os
import random
import re
import subprocess
import sys

import pytest
import torch
from fairseq.data import Dictionary
from test_convert import write_tiny_bert

from fairseq_sparse.convert import convert_bert
from fairseq_sparse.convert.checkpoint import encoder_flags
from fairseq_sparse.data.bert_wordpiece_bpe import BertWordPieceBPE, BertWordPieceConfig
from fairseq_sparse.data.squad import FeatureBuilder, SquadExample, best_spans, read_squad, split_words
from fairseq_sparse.data.squad_metrics import evaluate, exact_match, f1_score, normalize_answer
from fairseq_sparse.models.sparse_encoder import segment_ids

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "the cat sat on mat dog good bad movie is it a".split()


def script(rel):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], os.path.join(REPO, rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- official metric definitions ---------------------------------------------------------
def test_normalisation_em_f1_known_values():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("An apple a day") == "apple day"
    assert exact_match("Denver Broncos", "the Denver broncos.") == 1
    assert exact_match("Denver Broncos", "Broncos") == 0
    assert f1_score("Denver Broncos", "Broncos") == pytest.approx(2 / 3)  # P=1, R=1/2
    assert f1_score("a cat sat", "the dog sat") == pytest.approx(0.5)  # {cat, sat} vs {dog, sat}
    assert f1_score("cat cat dog", "cat") == pytest.approx(0.5)  # bag of tokens: P=1, R=1/3
    assert f1_score("", "") == 1.0 and f1_score("", "Paris") == 0.0 and f1_score("Paris", "") == 0.0
    assert f1_score("the", "a") == 1.0  # both normalise to nothing


def test_evaluate_v2_with_no_answer_threshold():
    gold = {"q1": ["Paris", "paris, France"], "q2": [], "q3": ["the 1990s", "1990s"], "q4": ["red car"]}
    preds = {"q1": "Paris", "q2": "London", "q3": "1990", "q4": "the red car"}
    out = evaluate(gold, preds)
    assert out["exact"] == pytest.approx(50.0) and out["total"] == 4  # q1, q4
    assert out["f1"] == pytest.approx(50.0)
    assert out["HasAns_exact"] == pytest.approx(200 / 3) and out["NoAns_exact"] == 0.0
    # no-answer probabilities: q2 abstains above 0.5, so it becomes right; q3 abstains too and stays wrong
    na = {"q1": 0.1, "q2": 0.9, "q3": 0.7, "q4": 0.2}
    out = evaluate(gold, preds, na_probs=na, na_prob_thresh=0.5)
    assert out["exact"] == pytest.approx(75.0) and out["NoAns_exact"] == 100.0
    # best threshold: answering q1, q4 and abstaining on q3, q2 gives 3/4
    assert out["best_exact"] == pytest.approx(75.0) and out["best_exact_thresh"] == 0.2
    with pytest.raises(ValueError, match="no prediction"):
        evaluate(gold, {"q1": "Paris"})


def test_best_spans_respects_masks_and_length():
    s = torch.tensor([[20.0, 5.0, 1.0, 9.5, 0.0]])
    e = torch.tensor([[20.0, 1.0, 8.0, 0.0, 2.0]])
    ok = torch.tensor([[False, True, True, True, True]])  # position 0 (<s>) is never a span
    start, end, score = best_spans(s, e, ok, ok, max_answer_length=5)
    assert (start.item(), end.item(), score.item()) == (1, 2, 13.0)  # (3, 2) would score 17.5: end < start
    start, end, _ = best_spans(s, e, ok, ok, max_answer_length=1)
    assert (start.item(), end.item()) == (3, 3)
    start, end, _ = best_spans(s, e, ok, ok & torch.tensor([[True, True, False, True, True]]), 5)
    assert (start.item(), end.item()) == (3, 4)


# ---- features ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("squad")
    write_tiny_bert(str(root / "bert"))
    convert_bert(str(root / "bert"), str(root / "ckpt"))
    return root


def builder(ckpt, **kw):
    bpe = BertWordPieceBPE(BertWordPieceConfig(bpe_vocab_file=str(ckpt / "ckpt" / "vocab.txt")))
    d = Dictionary.load(str(ckpt / "ckpt" / "dict.txt"))
    d.add_symbol("<mask>")
    return FeatureBuilder(bpe, d, bert_layout=True, **kw), d


def test_split_words_keeps_character_spans():
    text = "The cat's mat, (1990s)  ok"
    words = split_words(text)
    assert [text[s:e] for s, e, _ in words] == ["The", "cat", "'", "s", "mat", ",", "(", "1990s", ")", "ok"]
    assert [sp for _, _, sp in words][:4] == [True, True, False, False]


@pytest.mark.parametrize(
    "text, pieces, spaced",
    [
        ("东京 Tokyo塔", ["东", "京", "Tokyo", "塔"], [True, False, True, False]),  # each CJK ideograph is a word
        ("a\u00a0b\tc\nd", ["a", "b", "c", "d"], [True] * 4),  # no-break space, tab, newline separate
        ("cafe\u0301 \u00e9", ["cafe\u0301", "\u00e9"], [True, True]),  # accents kept, combining marks stay inside
        ("x\u200by, \u2060z", ["x\u200by", ",", "\u2060z"], [True, False, True]),  # format characters stay in the span
        ("\u00bfQu\u00e9?", ["\u00bf", "Qu\u00e9", "?"], [True, False, False]),
    ],
)
def test_split_words_follows_bert_word_boundaries(text, pieces, spaced):
    words = split_words(text)
    assert [text[s:e] for s, e, _ in words] == pieces
    assert [sp for _, _, sp in words] == spaced


def test_windows_max_context_and_answer_positions(ckpt):
    b, d = builder(ckpt, max_seq_length=16, doc_stride=4, max_query_length=3)
    context = "the cat sat on the mat . the dog is good , it is a bad movie ."
    start = context.index("dog is good")
    ex = SquadExample("q", "is the cat good ?", context, [("dog is good", start)])
    feats, words = b.features(ex, training=True)
    assert len(feats) > 2
    n_doc = len(context.split())
    owners = {}
    for ids, word_of, maxctx, s, e in feats:
        assert len(ids) <= 16 and ids[0] == d.bos() and ids[-1] == d.eos()
        assert ids[1:4] == b.ids("is the cat")  # question truncated to max_query_length
        # BERT's token types: [CLS] question [SEP] -> 0, context window [SEP] -> 1
        assert segment_ids(torch.tensor([ids]), d.eos(), 2)[0].tolist() == [0] * 5 + [1] * (len(ids) - 5)
        for pos, (w, m) in enumerate(zip(word_of, maxctx)):
            if m:
                owners.setdefault(w, []).append(pos)
        if s:
            got = context[words[word_of[s]][0] : words[word_of[e]][1]]
            assert got == "dog is good"
    assert sorted(owners) == list(range(n_doc))  # every context word has exactly one max-context window
    assert all(len(v) == 1 for v in owners.values())
    assert any(s == 0 and e == 0 for *_, s, e in feats)  # windows without the answer point at <s>
    unanswerable = SquadExample("q2", "why ?", context, [], is_impossible=True)
    assert all(s == 0 == e for *_, s, e in b.features(unanswerable, training=True)[0])
    wrong = SquadExample("q3", "why ?", context, [("cat", 0)])
    assert b.features(wrong, training=True)[0] == []  # answer text not at its offset: skipped


def write_squad_json(path, version, n_paragraphs, seed):
    r = random.Random(seed)
    articles = []
    for p in range(n_paragraphs):
        context = " ".join(r.choice(WORDS) for _ in range(24)) + ", the dog is good!"
        qas = []
        for q in range(3):
            k = r.randrange(20)
            words = context.split(" ")
            text = " ".join(words[k : k + 2]).rstrip(",!")
            offset = len(" ".join(words[:k])) + (1 if k else 0)
            if version == "2.0" and q == 2:
                qas.append({"id": f"{p}-{q}", "question": "is it a cat?", "answers": [], "is_impossible": True})
            else:
                qa = {
                    "id": f"{p}-{q}",
                    "question": f"what is {r.choice(WORDS)}?",
                    "answers": [{"text": text, "answer_start": offset}] * 2,
                }
                if version == "2.0":
                    qa["is_impossible"] = False
                qas.append(qa)
        articles.append({"title": f"t{p}", "paragraphs": [{"context": context, "qas": qas}]})
    with open(path, "w") as f:
        json.dump({"version": version, "data": articles}, f)
    return str(path)


def test_read_squad_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a SQuAD file"):
        read_squad(str(path))
    v2 = write_squad_json(tmp_path / "v2.json", "2.0", 1, 0)
    version, examples = read_squad(v2)
    assert version == "2.0" and sum(e.is_impossible for e in examples) == 1


def test_squad_v2_train_validate_evaluate_and_v1(ckpt, tmp_path):
    root = ckpt
    tok = [
        "--bpe",
        "bert_wordpiece",
        "--bpe-vocab-file",
        str(root / "ckpt" / "vocab.txt"),
        "--srcdict",
        str(root / "ckpt" / "dict.txt"),
        "--max-seq-length",
        "32",
        "--doc-stride",
        "8",
        "--max-query-length",
        "6",
    ]
    pre = script("examples/squad/preprocess.py")
    v2 = {
        s: write_squad_json(tmp_path / f"{s}-v2.0.json", "2.0", n, seed)
        for s, n, seed in (("train", 8, 1), ("dev", 3, 2))
    }
    pre.main(["--train", v2["train"], "--valid", v2["dev"], "--dest", str(tmp_path / "v2"), *tok])
    meta = json.load(open(tmp_path / "v2" / "meta.json"))
    assert meta["version"] == "2.0" and meta["splits"]["valid"]["examples"] == 9
    # a converted BERT reads question and context as token types 0 and 1: one </s> between them
    from fairseq.data import data_utils

    d = Dictionary.load(str(tmp_path / "v2" / "dict.txt"))
    feature = data_utils.load_indexed_dataset(str(tmp_path / "v2" / "valid.tokens"), d)[0]
    first_sep = feature.tolist().index(d.eos())
    assert feature.tolist().count(d.eos()) == 2 and feature[-1] == d.eos()
    assert segment_ids(feature[None], d.eos(), 2)[0].tolist() == [0] * (first_sep + 1) + [1] * (
        len(feature) - first_sep - 1
    )
    ckpt_path = str(root / "ckpt" / "model.pt")
    cmd = [
        sys.executable,
        "-m",
        "fairseq_cli.train",
        str(tmp_path / "v2"),
        "--user-dir",
        os.path.join(REPO, "fairseq_sparse"),
        "--cpu",
        "--task",
        "squad",
        "--criterion",
        "squad_span",
        "--arch",
        "sparse_roberta",
        *encoder_flags(ckpt_path),
        "--restore-file",
        ckpt_path,
        "--reset-optimizer",
        "--reset-dataloader",
        "--reset-meters",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--lr-scheduler",
        "fixed",
        "--batch-size",
        "16",
        "--max-epoch",
        "1",
        "--save-dir",
        str(tmp_path / "ck"),
        "--no-epoch-checkpoints",
        "--no-last-checkpoints",
        "--best-checkpoint-metric",
        "f1",
        "--maximize-best-checkpoint-metric",
        "--log-format",
        "simple",
        "--num-workers",
        "0",
        "--attn-normalizer",
        "sparsemax",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    valid = [line for line in (run.stdout + run.stderr).splitlines() if "valid on 'valid' subset" in line][-1]
    em = float(re.search(r"\| em ([\d.]+)", valid).group(1))
    f1 = float(re.search(r"\| f1 ([\d.]+)", valid).group(1))
    span_acc = float(re.search(r"\| span_acc ([\d.]+)", valid).group(1))
    assert 0 <= span_acc <= 100 and 0 <= em <= f1 <= 100

    ev = script("examples/squad/evaluate.py")
    best = str(tmp_path / "ck" / "checkpoint_best.pt")
    out = ev.main(
        [
            "--data",
            str(tmp_path / "v2"),
            "--checkpoint",
            best,
            "--out-dir",
            str(tmp_path / "pred"),
            "--gold",
            v2["dev"],
            "--cpu",
        ]
    )
    assert out["exact"] == pytest.approx(em, abs=0.01) and out["f1"] == pytest.approx(f1, abs=0.01)
    assert out["HasAns_total"] == 6 and out["NoAns_total"] == 3 and "best_f1_thresh" in out
    preds = json.load(open(tmp_path / "pred" / "predictions.json"))
    odds = json.load(open(tmp_path / "pred" / "null_odds.json"))
    assert sorted(preds) == sorted(odds) == sorted(f"{p}-{q}" for p in range(3) for q in range(3))
    dev = json.load(open(v2["dev"]))
    contexts = {qa["id"]: para["context"] for a in dev["data"] for para in a["paragraphs"] for qa in para["qas"]}
    assert all(text == "" or text in contexts[q] for q, text in preds.items())  # answers are context text

    v1 = write_squad_json(tmp_path / "dev-v1.1.json", "1.1", 2, 3)
    pre.main(["--valid", v1, "--dest", str(tmp_path / "v1"), *tok])
    out1 = ev.main(
        ["--data", str(tmp_path / "v1"), "--checkpoint", best, "--out-dir", str(tmp_path / "pred1"), "--cpu"]
    )
    assert "HasAns_total" not in out1 and out1["total"] == 6
    assert not os.path.exists(tmp_path / "pred1" / "null_odds.json")
    assert all(json.load(open(tmp_path / "pred1" / "predictions.json")).values())  # v1.1 always answers


def test_gpt2_layout_and_leading_spaces(tmp_path):
    from argparse import Namespace

    from test_glue import write_fake_gpt2

    from fairseq_sparse.data.checkpoint_tokenizer import build_tokenizer

    g = write_fake_gpt2(str(tmp_path / "gpt2"))
    bpe = build_tokenizer(
        Namespace(
            bpe="gpt2", gpt2_encoder_json=g + "/encoder.json", gpt2_vocab_bpe=g + "/vocab.bpe", srcdict=g + "/dict.txt"
        )
    )
    d = Dictionary.load(g + "/dict.txt")
    d.add_symbol("<mask>")
    b = FeatureBuilder(
        bpe, d, bert_layout=False, space_prefix=True, max_seq_length=40, doc_stride=8, max_query_length=4
    )
    context = "the cat sat on the mat, the dog is good!"
    ex = SquadExample("q", "is it good?", context, [("the dog", context.index("the dog"))])
    ((ids, word_of, maxctx, s, e),) = b.features(ex, training=True)[0]
    encoder = json.load(open(g + "/encoder.json"))
    q = b.ids("is it good?")[:4]
    assert ids[: len(q) + 3] == [d.bos(), *q, d.eos(), d.eos()]  # RoBERTa: <s> q </s></s> context </s>
    first = len(q) + 3
    assert ids[first] == d.index(str(encoder["the"]))  # context start: no leading space
    assert ids[first + 1] == d.index(str(encoder["\u0120cat"]))  # later words: GPT-2's space marker
    words = split_words(context)
    assert context[words[word_of[s]][0] : words[word_of[e]][1]] == "the dog"


def test_squad_span_needs_the_squad_task(mlm_data):
    from fairseq import options, tasks

    from fairseq_sparse.criterions.squad import SquadSpanConfig, SquadSpanCriterion

    args = options.parse_args_and_arch(
        options.get_training_parser(),
        [str(mlm_data), "--task", "masked_lm", "--criterion", "squad_span", "--arch", "sparse_roberta_tiny"],
    )
    task = tasks.setup_task(args)
    with pytest.raises(ValueError, match="--criterion squad_span needs --task squad"):
        task.build_criterion(args)
    with pytest.raises(ValueError, match="needs --task squad"):
        SquadSpanCriterion(SquadSpanConfig(), task)
