"""A checkpoint and a sentence_prediction data directory -> a model whose heads can be inspected.

Any RoBERTa-family checkpoint (stock `roberta`, `sparse_roberta`, a converted BERT) is rebuilt
with a model whose attention is SparseMultiheadAttention: the parameter names are the same, and
only that module exposes per-head maps and the uniform-attention switch. The data side is always
fairseq's sentence_prediction task read in file order (example i is line i of the split), with the
token layout ([CLS]/<s> first, pair separator) the fine-tuning run used, so the analysis sees the
tokens the classifier was trained on.
"""

import argparse
import json
import logging
import os
from dataclasses import dataclass, field

import torch

logger = logging.getLogger(__name__)

DEFAULT_HEAD = "sentence_classification_head"
DEFAULT_ARCH = "sparse_roberta"
EMBED_KEY = "encoder.sentence_encoder.embed_tokens.weight"


@dataclass
class AnalysisSetup:
    """Everything an analysis needs: the eval-mode model, its data task and how to read its outputs."""

    model: torch.nn.Module
    task: object
    checkpoint: str
    head_name: str
    has_head: bool
    regression: bool
    device: str
    label_names: list[str] | None = None
    arch: str = DEFAULT_ARCH
    normalizer: str = "softmax"
    extra: dict = field(default_factory=dict)

    @property
    def dictionary(self):
        return self.task.source_dictionary

    @property
    def attention_modules(self):
        return self.model.attention_modules()

    @property
    def num_layers(self):
        return len(self.attention_modules)

    @property
    def num_heads(self):
        return self.attention_modules[0].num_heads

    @property
    def init_token(self):
        return self.task.cfg.init_token

    @property
    def separator_token(self):
        return self.task.cfg.separator_token

    def require_head(self, what):
        if not self.has_head:
            heads = sorted(getattr(self.model, "classification_heads", {}) or [])
            raise ValueError(
                f"{what} needs a classifier, but checkpoint {self.checkpoint!r} has no classification head "
                f"{self.head_name!r} (heads found: {heads}); pass a fine-tuned checkpoint or "
                "--classification-head-name"
            )


def read_checkpoint(path):
    """The checkpoint dict, read weights-only (fairseq_sparse/checkpoint_reader.py)."""
    from ..checkpoint_reader import read_checkpoint as read

    return read(path)


def _as_dict(obj):
    if obj is None:
        return {}
    if isinstance(obj, argparse.Namespace):
        return dict(vars(obj))
    if isinstance(obj, dict):
        return dict(obj)
    try:  # an OmegaConf DictConfig
        from omegaconf import OmegaConf

        return dict(OmegaConf.to_container(obj, resolve=True))
    except Exception:
        return dict(vars(obj))


def checkpoint_sections(state):
    """(model, task, criterion) options as dicts, from `args` (argparse) or `cfg` (hydra) checkpoints."""
    if state.get("args") is not None:
        args = _as_dict(state["args"])
        return args, args, args
    cfg = state.get("cfg") or {}
    if not isinstance(cfg, dict):
        cfg = _as_dict(cfg)
    model = _as_dict(cfg.get("model"))
    if not model:
        raise ValueError("the checkpoint has neither args nor cfg.model")
    return model, _as_dict(cfg.get("task")), _as_dict(cfg.get("criterion"))


def _task_name(task_opts):
    return task_opts.get("_name") or task_opts.get("task")


def _read_meta(data):
    path = os.path.join(data, "meta.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return {}


def _count_labels(data):
    """Classes in label/dict.txt; fairseq-preprocess pads dictionaries with 'madeupwordNNNN' fillers."""
    path = os.path.join(data, "label", "dict.txt")
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip() and not line.startswith("madeupword"))


def build_task(
    data, state, split, init_token=None, separator_token=None, max_positions=None, head_name=None, regression=None
):
    """fairseq's sentence_prediction task over DATA, laid out as the checkpoint's fine-tuning was.

    Token layout, first found wins: the command line, the checkpoint's own sentence_prediction
    options, DATA/meta.json (written by the plugin's preprocessing), then BERT layout when the
    checkpoint tokenises with WordPiece and RoBERTa layout otherwise.
    """
    from fairseq import tasks

    if not os.path.isfile(os.path.join(data, "input0", "dict.txt")):
        raise FileNotFoundError(
            f"{data!r} is not a sentence_prediction data directory: expected {os.path.join(data, 'input0', 'dict.txt')}"
            " (binarised input0/[input1/]label/ as written by fairseq-preprocess)"
        )
    model_opts, task_opts, crit_opts = checkpoint_sections(state)
    fine_tuned = _task_name(task_opts) == "sentence_prediction"
    meta = _read_meta(data)

    def pick(cli, key, fallback):
        if cli is not None:
            return cli
        if fine_tuned and key in task_opts:
            return task_opts[key]
        return fallback

    if regression is None:
        regression = bool(crit_opts.get("regression_target")) if fine_tuned else bool(meta.get("regression", False))
    bert_layout = meta.get("bert_layout", model_opts.get("bpe") == "bert_wordpiece")
    if regression:
        num_classes = int((task_opts.get("num_classes") if fine_tuned else None) or meta.get("num_classes") or 1)
    elif os.path.isfile(os.path.join(data, "label", "dict.txt")):
        num_classes = _count_labels(data)
    else:
        raise FileNotFoundError(
            f"{os.path.join(data, 'label', 'dict.txt')!r} not found: classification data needs its label dictionary"
        )
    model_positions = model_opts.get("max_positions") or model_opts.get("tokens_per_sample") or 512
    positions = (
        max_positions
        if max_positions is not None
        else (task_opts.get("max_positions") if fine_tuned and task_opts.get("max_positions") else model_positions)
    )
    if positions > model_positions:
        raise ValueError(f"--max-positions {positions} exceeds the model's {model_positions} learned positions")
    ns = argparse.Namespace(
        task="sentence_prediction",
        data=data,
        num_classes=num_classes,
        init_token=pick(init_token, "init_token", 0),
        separator_token=pick(separator_token, "separator_token", None if bert_layout else 2),
        no_shuffle=True,
        shorten_method="truncate",
        shorten_data_split_list="",
        add_prev_output_tokens=False,
        max_positions=int(positions),
        regression_target=regression,
        classification_head_name=head_name or crit_opts.get("classification_head_name") or DEFAULT_HEAD,
        seed=1,
        d2v2_multi=False,
    )
    if ns.separator_token is not None and ns.separator_token < 0:
        ns.separator_token = None
    task = tasks.setup_task(ns)
    load_split(task, split)
    return task, meta


def load_split(task, split):
    data = task.cfg.data
    if not os.path.isfile(os.path.join(data, "input0", f"{split}.idx")):
        have = sorted(f[:-4] for f in os.listdir(os.path.join(data, "input0")) if f.endswith(".idx"))
        raise FileNotFoundError(f"split {split!r} not found in {data!r}/input0 (available: {have})")
    if split not in task.datasets:
        task.load_dataset(split)
    return task.dataset(split)


def _analysis_arch(model_opts, arch):
    """The architecture to rebuild: the checkpoint's own if it has SparseMultiheadAttention, else sparse_roberta."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    if arch is not None:
        if arch not in ARCH_MODEL_REGISTRY:
            raise ValueError(f"--arch {arch!r} is not a registered fairseq architecture")
        return arch
    saved = model_opts.get("arch") or model_opts.get("_name")
    cls = ARCH_MODEL_REGISTRY.get(saved)
    if cls is not None and hasattr(cls, "attention_modules"):
        return saved
    from fairseq.models.roberta import RobertaModel

    if cls is None or issubclass(cls, RobertaModel):
        return DEFAULT_ARCH  # stock RoBERTa (or unknown): same parameter names, dimensions from the args
    raise ValueError(
        f"checkpoint architecture {saved!r} ({cls.__name__}) is not RoBERTa-like; pass --arch with a "
        "registered architecture whose model has attention_modules()"
    )


def build_model(state, task, arch=None, overrides=None):
    """The checkpoint's weights in an eval-mode model with SparseMultiheadAttention.

    `overrides` replaces model options (e.g. {"attn_normalizer": "sparsemax"}: the same weights
    read with another normaliser, as SSAF's fine-tuning starts).
    """
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

    model_opts, _, _ = checkpoint_sections(state)
    arch = _analysis_arch(model_opts, arch)
    args = argparse.Namespace(**model_opts)
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"model override key {key!r} is not an option name (use underscores: attn_normalizer)")
        setattr(args, key, value)
    args.arch = arch
    if hasattr(args, "_name"):
        args._name = arch
    args.load_checkpoint_heads = True  # register the classification heads the checkpoint has
    rows = state["model"].get(EMBED_KEY)
    if rows is not None and rows.shape[0] != len(task.source_dictionary):
        raise ValueError(
            f"the data dictionary {os.path.join(task.cfg.data, 'input0', 'dict.txt')!r} gives "
            f"{len(task.source_dictionary)} symbols but the checkpoint embeds {rows.shape[0]}: the data was "
            "binarised with a different dictionary than the checkpoint's"
        )
    ARCH_CONFIG_REGISTRY[arch](args)
    model = ARCH_MODEL_REGISTRY[arch].build_model(args, task)
    if not hasattr(model, "attention_modules") or not model.attention_modules():
        raise ValueError(f"arch {arch!r} builds {type(model).__name__}, which has no SparseMultiheadAttention")
    model.load_state_dict(dict(state["model"]), strict=True, model_cfg=args)
    return model.eval(), arch


def load_for_analysis(
    checkpoint,
    data,
    split="valid",
    arch=None,
    head_name=None,
    init_token=None,
    separator_token=None,
    max_positions=None,
    device=None,
    state=None,
    model_overrides=None,
):
    """Load CHECKPOINT for analysis on DATA/SPLIT; see the module docstring for the choices made."""
    state = state if state is not None else read_checkpoint(checkpoint)
    task, meta = build_task(
        data,
        state,
        split,
        init_token=init_token,
        separator_token=separator_token,
        max_positions=max_positions,
        head_name=head_name,
    )
    model, arch = build_model(state, task, arch=arch, overrides=model_overrides)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    name = task.cfg.classification_head_name
    heads = getattr(model, "classification_heads", None) or {}
    has_head = name in heads
    regression = bool(task.cfg.regression_target)
    if has_head and not regression and heads[name].out_proj.out_features != task.cfg.num_classes:
        logger.warning(
            "classification head %r has %d outputs but %s has %d labels: not used",
            name,
            heads[name].out_proj.out_features,
            data,
            task.cfg.num_classes,
        )
        has_head = False
    modules = model.attention_modules()
    return AnalysisSetup(
        model=model,
        task=task,
        checkpoint=checkpoint,
        head_name=name,
        has_head=has_head,
        regression=regression,
        device=device,
        label_names=meta.get("label_names"),
        arch=arch,
        normalizer=modules[0].normalizer_name,
    )
