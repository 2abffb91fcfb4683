"""Hugging Face BERT directory -> fairseq RoBERTa-style checkpoint (sparse_roberta).

Why each step exists (fairseq and BERT disagree on these points):
- Vocabulary: fairseq's Dictionary puts <s>,<pad>,</s>,<unk> first and tasks append <mask>
  last, so dict.txt is BERT's vocab without its five specials and the embedding rows are
  permuted to match ([CLS]-><s>, [PAD]-><pad>, [SEP]-></s>, [UNK]-><unk>, [MASK]-><mask>).
  The size stays the same.
- Positions: fairseq numbers positions from padding_idx + 1, so BERT position i lands on
  row padding_idx + 1 + i.
- Token types: fairseq RoBERTa has none; the checkpoint asks sparse_roberta for
  --segment-embeddings TYPE_VOCAB_SIZE and carries BERT's token_type_embeddings there. The
  model derives each token's type from the </s> ([SEP]) before it, so `<s> A </s> B </s>`
  (BERT's [CLS] A [SEP] B [SEP], the layout the plugin's pair and SQuAD data use for a
  converted BERT) embeds exactly as BERT embeds it with token_type_ids 0...0 1...1.
- LayerNorm epsilon: BERT uses 1e-12; fairseq's default 1e-5 moves hidden states by ~1e-3,
  so the checkpoint carries --layer-norm-eps from config.json.
- Pooler: BERT's pooler (dense + tanh on [CLS]) is exactly a RoBERTa classification head's
  dense layer; `pooler_head` stores it there under a chosen head name.
- Parameters BERT lacks (the MLM head of a plain BertModel, a head's output layer) keep the
  fresh initialisation of the built fairseq model, so the checkpoint loads with strict=True.
"""

import json
import logging
import os
import tempfile

import torch

from ..atomic_files import atomic_output
from ..checkpoint_reader import read_checkpoint
from ..data.wordpiece import SPECIAL_TOKENS, load_vocab
from .checkpoint import minimal_training_state

logger = logging.getLogger(__name__)

REQUIRED_CONFIG_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
)
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_accurate", "gelu_pytorch_tanh": "gelu_accurate"}
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# BERT special role -> fairseq symbol, in fairseq's index order for the first four.
ROLE_TO_FAIRSEQ = (("cls_token", "<s>"), ("pad_token", "<pad>"), ("sep_token", "</s>"), ("unk_token", "<unk>"))
DEFAULT_SPECIALS = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), SPECIAL_TOKENS))
ENC = "encoder.sentence_encoder."
DEFAULT_ARCHS = ("sparse_roberta", "sparse_roberta_base")


class BertCheckpoint:
    """The parts of a Hugging Face BERT directory the conversion needs, validated."""

    def __init__(self, src):
        if not os.path.isdir(src):
            raise FileNotFoundError(f"BERT checkpoint directory not found: {src!r}")
        self.src = src
        self.config = _read_json(self._need("config.json"))
        self._check_config()
        self.vocab_path = self._need("vocab.txt")
        self.vocab = load_vocab(self.vocab_path)
        self.specials = self._special_tokens()
        self.lowercase, self.strip_accents = self._casing()
        self.tensors = self._load_tensors()
        self._check_vocab()

    def _need(self, name):
        path = os.path.join(self.src, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{self.src!r} has no {name}; a Hugging Face BERT directory needs "
                "config.json, model.safetensors (or pytorch_model.bin) and vocab.txt"
            )
        return path

    def _check_config(self):
        c = self.config
        archs = c.get("architectures") or []
        if c.get("model_type") != "bert" and not any(a.startswith("Bert") for a in archs):
            raise ValueError(
                f"config.json in {self.src!r} is not a BERT config: model_type={c.get('model_type')!r}, "
                f"architectures={archs!r} (expected model_type 'bert')"
            )
        missing = [k for k in REQUIRED_CONFIG_KEYS if k not in c]
        if missing:
            raise ValueError(f"BERT config.json in {self.src!r} lacks {missing}")
        if c.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"position_embedding_type={c['position_embedding_type']!r} is not supported "
                "(fairseq RoBERTa has learned absolute positions only)"
            )
        if c.get("hidden_act", "gelu") not in ACTIVATIONS:
            raise ValueError(f"hidden_act={c['hidden_act']!r} is not supported; expected one of {sorted(ACTIVATIONS)}")
        if c["hidden_size"] % c["num_attention_heads"]:
            raise ValueError(
                f"hidden_size {c['hidden_size']} is not divisible by num_attention_heads {c['num_attention_heads']}"
            )

    def _special_tokens(self):
        specials = dict(DEFAULT_SPECIALS)
        path = os.path.join(self.src, "special_tokens_map.json")
        if os.path.isfile(path):
            for role, value in _read_json(path).items():
                if role in specials:
                    specials[role] = value["content"] if isinstance(value, dict) else value
        return specials

    def _casing(self):
        """(lowercase, strip_accents) from tokenizer_config.json, else guessed from the vocab."""
        path = os.path.join(self.src, "tokenizer_config.json")
        tok_cfg = _read_json(path) if os.path.isfile(path) else {}
        if "do_lower_case" in tok_cfg:
            lowercase = bool(tok_cfg["do_lower_case"])
        else:
            specials = set(self.specials.values())
            cased = sum(1 for t in self.vocab if t not in specials and t.lower() != t)
            lowercase = cased < 0.01 * len(self.vocab)
            logger.warning("no do_lower_case in tokenizer_config.json; guessed lowercase=%s from the vocab", lowercase)
        return lowercase, tok_cfg.get("strip_accents")

    def _load_tensors(self):
        st = os.path.join(self.src, "model.safetensors")
        pt = os.path.join(self.src, "pytorch_model.bin")
        if os.path.isfile(st):
            from safetensors.torch import load_file

            tensors = load_file(st)
        elif os.path.isfile(pt):
            tensors = read_checkpoint(pt, fairseq=False)
        else:
            raise FileNotFoundError(f"{self.src!r} has neither model.safetensors nor pytorch_model.bin")
        # BertForPreTraining / BertForMaskedLM prefix the encoder with "bert."
        if any(k.startswith("bert.") for k in tensors):
            tensors = {(k[5:] if k.startswith("bert.") else k): v for k, v in tensors.items()}
        tensors = {
            k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
            for k, v in tensors.items()
        }
        if "embeddings.word_embeddings.weight" not in tensors:
            raise ValueError(f"weights in {self.src!r} have no embeddings.word_embeddings.weight: not a BERT model")
        return tensors

    def _check_vocab(self):
        n_cfg = self.config["vocab_size"]
        n_emb = self.tensors["embeddings.word_embeddings.weight"].shape[0]
        if not len(self.vocab) == n_cfg == n_emb:
            raise ValueError(
                f"vocab size mismatch: vocab.txt has {len(self.vocab)} tokens, config.json vocab_size={n_cfg}, "
                f"word embeddings have {n_emb} rows"
            )
        seen = set()
        for i, tok in enumerate(self.vocab):
            if tok in seen:
                raise ValueError(f"vocab.txt line {i + 1}: duplicate token {tok!r}")
            if tok == "" or any(ch.isspace() for ch in tok):
                raise ValueError(f"vocab.txt line {i + 1}: token {tok!r} is empty or contains whitespace")
            if tok in FAIRSEQ_SPECIALS:
                raise ValueError(f"vocab.txt line {i + 1}: token {tok!r} collides with a fairseq special symbol")
            seen.add(tok)
        for role, tok in self.specials.items():
            if tok not in seen:
                raise ValueError(f"special token {role}={tok!r} is not in vocab.txt")

    def fairseq_order(self):
        """BERT ids in fairseq dictionary order: 4 specials, the rest, then [MASK] (appended as <mask>)."""
        index = {tok: i for i, tok in enumerate(self.vocab)}
        head = [index[self.specials[role]] for role, _ in ROLE_TO_FAIRSEQ]
        special_ids = set(index[t] for t in self.specials.values())
        body = [i for i in range(len(self.vocab)) if i not in special_ids]
        return head + body + [index[self.specials["mask_token"]]]


def build_args(bert, arch, vocab_file, data="."):
    """An argparse Namespace as `fairseq-train --task masked_lm --arch ARCH` would save it."""
    from fairseq import options
    from fairseq.models import ARCH_MODEL_REGISTRY

    if arch is None:
        arch = next((a for a in DEFAULT_ARCHS if a in ARCH_MODEL_REGISTRY), None)
        if arch is None:
            raise ValueError(f"none of the architectures {DEFAULT_ARCHS} is registered; pass --arch")
    if arch not in ARCH_MODEL_REGISTRY:
        raise ValueError(f"--arch {arch!r} is not a registered fairseq architecture")
    c = bert.config
    argv = [
        data,
        "--task",
        "masked_lm",
        "--criterion",
        "masked_lm",
        "--arch",
        arch,
        "--encoder-layers",
        str(c["num_hidden_layers"]),
        "--encoder-embed-dim",
        str(c["hidden_size"]),
        "--encoder-ffn-embed-dim",
        str(c["intermediate_size"]),
        "--encoder-attention-heads",
        str(c["num_attention_heads"]),
        "--max-positions",
        str(c["max_position_embeddings"]),
        "--tokens-per-sample",
        str(c["max_position_embeddings"]),
        "--activation-fn",
        ACTIVATIONS[c.get("hidden_act", "gelu")],
        "--dropout",
        str(c.get("hidden_dropout_prob", 0.1)),
        "--attention-dropout",
        str(c.get("attention_probs_dropout_prob", 0.1)),
        "--pooler-dropout",
        str(c.get("hidden_dropout_prob", 0.1)),
        "--pooler-activation-fn",
        "tanh",
        "--bpe",
        "bert_wordpiece",
        "--bpe-vocab-file",
        vocab_file,
    ]
    if not bert.lowercase:
        argv.append("--bpe-cased")
    parser = options.get_training_parser(default_task="masked_lm")
    args = options.parse_args_and_arch(parser, argv)
    if bert.strip_accents is not None:
        args.bpe_strip_accents = bool(bert.strip_accents)
    types = bert.tensors.get("embeddings.token_type_embeddings.weight")
    if types is not None and hasattr(args, "segment_embeddings"):
        args.segment_embeddings = types.shape[0]
    elif types is not None:
        logger.warning(
            "arch %s has no --segment-embeddings: token type 0 is folded into the positions, so the "
            "second segment of a sentence pair is embedded as the first",
            arch,
        )
    eps = float(c.get("layer_norm_eps", 1e-12))
    if hasattr(args, "layer_norm_eps"):
        args.layer_norm_eps = eps
    else:
        logger.warning(
            "arch %s has no --layer-norm-eps: its LayerNorms use fairseq's 1e-5 instead of BERT's %g, "
            "so hidden states differ from BERT by ~1e-3",
            arch,
            eps,
        )
    return args


def map_bert_tensors(bert, padding_idx, segment_embeddings=True):
    """{fairseq parameter name: tensor} for everything BERT provides.

    segment_embeddings=False (an arch without them): token type 0 is added to every position.
    """
    t, c = bert.tensors, bert.config
    order = torch.tensor(bert.fairseq_order())
    words = t["embeddings.word_embeddings.weight"][order]
    pos = t["embeddings.position_embeddings.weight"]
    types = t.get("embeddings.token_type_embeddings.weight")
    if types is not None and not segment_embeddings:
        pos = pos + types[0]
    positions = torch.zeros(pos.shape[0] + padding_idx + 1, pos.shape[1], dtype=pos.dtype)
    positions[padding_idx + 1 :] = pos
    out = {
        ENC + "embed_tokens.weight": words,
        "encoder.lm_head.weight": words,
        ENC + "embed_positions.weight": positions,
        ENC + "layernorm_embedding.weight": t["embeddings.LayerNorm.weight"],
        ENC + "layernorm_embedding.bias": t["embeddings.LayerNorm.bias"],
    }
    if types is not None and segment_embeddings:
        out[ENC + "segment_embeddings.weight"] = types
    per_layer = {
        "attention.self.query": "self_attn.q_proj",
        "attention.self.key": "self_attn.k_proj",
        "attention.self.value": "self_attn.v_proj",
        "attention.output.dense": "self_attn.out_proj",
        "attention.output.LayerNorm": "self_attn_layer_norm",
        "intermediate.dense": "fc1",
        "output.dense": "fc2",
        "output.LayerNorm": "final_layer_norm",
    }
    for i in range(c["num_hidden_layers"]):
        for hf, fs in per_layer.items():
            for p in ("weight", "bias"):
                key = f"encoder.layer.{i}.{hf}.{p}"
                if key not in t:
                    raise ValueError(f"BERT weights lack {key!r} (config says {c['num_hidden_layers']} layers)")
                out[f"{ENC}layers.{i}.{fs}.{p}"] = t[key]
    mlm = "cls.predictions."
    if mlm + "transform.dense.weight" in t:
        out["encoder.lm_head.dense.weight"] = t[mlm + "transform.dense.weight"]
        out["encoder.lm_head.dense.bias"] = t[mlm + "transform.dense.bias"]
        out["encoder.lm_head.layer_norm.weight"] = t[mlm + "transform.LayerNorm.weight"]
        out["encoder.lm_head.layer_norm.bias"] = t[mlm + "transform.LayerNorm.bias"]
        out["encoder.lm_head.bias"] = t[mlm + "bias"][order]
    return out


def convert_bert(src, out_dir, arch=None, pooler_head=None, seed=1):
    """Write OUT_DIR/{model.pt, dict.txt, vocab.txt}; return the model.pt path.

    model.pt loads with `fairseq-train --restore-file OUT_DIR/model.pt` and with
    `SparseRobertaModel.from_pretrained(OUT_DIR, "model.pt", **hub_kwargs(OUT_DIR))`.
    """
    from fairseq import tasks

    bert = BertCheckpoint(src)
    if pooler_head and "pooler.dense.weight" not in bert.tensors:
        raise ValueError(f"--pooler-head {pooler_head!r} asked for, but {src!r} has no pooler weights")
    os.makedirs(out_dir, exist_ok=True)
    vocab_out = os.path.abspath(os.path.join(out_dir, "vocab.txt"))
    dict_lines = "".join(f"{bert.vocab[i]} 1\n" for i in bert.fairseq_order()[4:-1])

    args = build_args(bert, arch, vocab_out)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "dict.txt"), "w", encoding="utf-8") as f:
            f.write(dict_lines)
        args.data = tmp
        torch.manual_seed(seed)
        task = tasks.setup_task(args)
        model = task.build_model(args)
    args.data = "."
    if len(task.source_dictionary) != len(bert.vocab):
        raise RuntimeError(f"dictionary has {len(task.source_dictionary)} symbols, BERT vocab {len(bert.vocab)}")

    converted = map_bert_tensors(bert, task.source_dictionary.pad(), bool(getattr(args, "segment_embeddings", 0)))
    if pooler_head:
        model.register_classification_head(pooler_head, num_classes=1)  # out_proj is not kept (below)
        head = f"classification_heads.{pooler_head}.dense."
        converted[head + "weight"] = bert.tensors["pooler.dense.weight"]
        converted[head + "bias"] = bert.tensors["pooler.dense.bias"]
    state = model.state_dict()
    for key, value in converted.items():
        if key not in state:
            raise RuntimeError(f"arch {args.arch!r} has no parameter {key!r}")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(f"{key}: BERT tensor shape {tuple(value.shape)} != fairseq {tuple(state[key].shape)}")
        state[key] = value.to(state[key].dtype).clone().contiguous()
    if not getattr(args, "untie_weights_roberta", False):  # tied: save one tensor, as fairseq does
        state["encoder.lm_head.weight"] = state[ENC + "embed_tokens.weight"]
    kept = sorted(
        k
        for k in state
        if k not in converted
        and not k.endswith(".version")
        and not (pooler_head and k.startswith(f"classification_heads.{pooler_head}.out_proj."))
    )
    if kept:
        logger.info("not in the BERT checkpoint, kept at initialisation: %s", ", ".join(kept))
    model.load_state_dict(state, strict=True)  # proves the checkpoint matches the architecture
    if pooler_head:  # the output layer is new: the fine-tuning run makes it from its own --seed and classes
        for key in [k for k in state if k.startswith(f"classification_heads.{pooler_head}.out_proj.")]:
            del state[key]

    checkpoint = {"args": args, "model": state, **minimal_training_state("masked_lm")}
    with atomic_output(vocab_out) as f:
        f.write("".join(t + "\n" for t in bert.vocab))
    with atomic_output(os.path.join(out_dir, "dict.txt")) as f:
        f.write(dict_lines)
    model_path = os.path.join(out_dir, "model.pt")
    with atomic_output(model_path, "wb") as f:
        torch.save(checkpoint, f)
    logger.info(
        "converted %s -> %s (arch %s, %d layers, dim %d, %d heads, vocab %d, layer_norm_eps %g)",
        src,
        model_path,
        args.arch,
        args.encoder_layers,
        args.encoder_embed_dim,
        args.encoder_attention_heads,
        len(bert.vocab),
        getattr(args, "layer_norm_eps", 1e-5),
    )
    return model_path


def hub_kwargs(out_dir):
    """Overrides for `from_pretrained(out_dir, "model.pt", **hub_kwargs(out_dir))`.

    RobertaModel.from_pretrained defaults to bpe="gpt2"; a converted BERT needs its WordPiece
    vocab, taken from out_dir so the directory can be moved.
    """
    return {"bpe": "bert_wordpiece", "bpe_vocab_file": os.path.abspath(os.path.join(out_dir, "vocab.txt"))}


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path!r} is not valid JSON: {e}") from None
