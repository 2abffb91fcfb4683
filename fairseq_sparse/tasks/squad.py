"""`--task squad`: extractive question answering (SQuAD v1.1 / v2.0) on RoBERTa-style encoders.

Data: a directory written by examples/squad/preprocess.py (see fairseq_sparse/data/squad.py).
The task adds a per-token span head to the model and, at validation, decodes the best
answer span of every question and prints the official exact-match and F1 (`em`, `f1`), so
`--best-checkpoint-metric f1 --maximize-best-checkpoint-metric` selects on the real score.
"""

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from fairseq import utils
from fairseq.data import Dictionary
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING, OmegaConf, open_dict

from ..data.squad import answers_from_spans, read_examples
from ..data.squad_dataset import SquadFeatureDataset
from ..data.squad_metrics import evaluate

logger = logging.getLogger(__name__)


@dataclass
class SquadConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "directory written by examples/squad/preprocess.py"})
    max_positions: int = field(default=512, metadata={"help": "max tokens per feature"})
    span_head_name: str = field(default="squad_span_head", metadata={"help": "name of the span head on the model"})
    max_answer_length: int = field(default=30, metadata={"help": "longest answer, in tokens, when decoding"})
    null_score_diff_threshold: float = field(
        default=0.0, metadata={"help": "SQuAD v2.0: answer '' when null score - best span score exceeds this"}
    )
    seed: int = II("common.seed")


class SpanPredictionHead(nn.Module):
    """Start and end logits for every token.

    Its layers are named dense/out_proj like RoBERTa's classification head because RoBERTa's
    checkpoint upgrade reads exactly those two shapes to keep, add or drop a head; living in
    `model.classification_heads` it is then saved, restored and fine-tuned like one.
    """

    def __init__(self, input_dim, inner_dim, activation_fn, dropout):
        super().__init__()
        self.dense = nn.Linear(input_dim, inner_dim)
        self.activation_fn = utils.get_activation_fn(activation_fn)
        self.dropout = nn.Dropout(p=dropout)
        self.out_proj = nn.Linear(inner_dim, 2)

    def forward(self, features, **kwargs):
        x = self.dropout(features)
        x = self.activation_fn(self.dense(x))
        x = self.dropout(x)
        return self.out_proj(x)  # (batch, tokens, 2): start, end


@register_task("squad", dataclass=SquadConfig)
class SquadTask(FairseqTask):
    def __init__(self, cfg, dictionary, meta):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.meta = meta
        self.examples = []  # every loaded split's examples; features point into it by offset
        self._offsets = {}  # split -> its offset in self.examples (reloading a split reuses it)
        self._metric_cache = (None, None)

    @classmethod
    def load_dictionary(cls, filename):
        dictionary = Dictionary.load(filename)
        dictionary.add_symbol("<mask>")
        return dictionary

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        meta_path = os.path.join(cfg.data, "meta.json")
        if not os.path.isfile(meta_path):
            raise FileNotFoundError(f"{meta_path!r} not found: --task squad needs examples/squad/preprocess.py output")
        with open(meta_path) as f:
            meta = json.load(f)
        dictionary = cls.load_dictionary(os.path.join(cfg.data, "dict.txt"))
        logger.info("SQuAD v%s data, dictionary: %d types", meta.get("version"), len(dictionary))
        return cls(cfg, dictionary, meta)

    def load_dataset(self, split, combine=False, **kwargs):
        prefix = os.path.join(self.cfg.data, split)
        if not SquadFeatureDataset.exists(prefix):
            raise FileNotFoundError(f"no SQuAD split {split!r} in {self.cfg.data!r}")
        examples = read_examples(prefix + ".examples.jsonl")
        if split in self._offsets:  # fairseq reloads train every epoch: same data, same place
            offset = self._offsets[split]
            self.examples[offset : offset + len(examples)] = examples
        else:
            offset = self._offsets[split] = len(self.examples)
            self.examples.extend(examples)
        self.datasets[split] = SquadFeatureDataset(
            prefix, self.dictionary.pad(), example_offset=offset, shuffle=split == "train", seed=self.cfg.seed
        )
        logger.info("loaded %s: %d features", split, len(self.datasets[split]))
        return self.datasets[split]

    def get_batch_iterator(self, dataset, *args, **kwargs):
        # fairseq drops a last batch whose size is not a multiple of --required-batch-size-multiple
        # (default 8; facebookresearch/fairseq#5036), which would leave questions unscored
        if dataset is not self.datasets.get("train"):
            kwargs["required_batch_size_multiple"] = 1
        return super().get_batch_iterator(dataset, *args, **kwargs)

    def build_model(self, cfg, from_checkpoint=False):
        from fairseq import models

        with open_dict(cfg) if OmegaConf.is_config(cfg) else contextlib.ExitStack():
            cfg.max_positions = self.cfg.max_positions
        model = models.build_model(cfg, self, from_checkpoint)
        if not hasattr(model, "classification_heads"):
            raise ValueError(f"--task squad needs a RoBERTa-style model with classification heads, got {type(model)}")
        args = getattr(model, "args", cfg)
        dim = args.encoder_embed_dim
        model.classification_heads[self.cfg.span_head_name] = SpanPredictionHead(
            dim, dim, getattr(args, "activation_fn", "gelu"), getattr(args, "pooler_dropout", 0.1)
        )
        return model

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        rows = [log["squad_spans"] for log in logging_outputs if "squad_spans" in log]
        if not rows:
            return
        metrics.log_concat_tensor("_squad_spans", torch.cat(rows), dim=0)
        metrics.log_derived("em", lambda meters: round(self.span_metrics(meters["_squad_spans"].tensor)["exact"], 2))
        metrics.log_derived("f1", lambda meters: round(self.span_metrics(meters["_squad_spans"].tensor)["f1"], 2))

    def span_metrics(self, rows):
        """Official EM/F1 over the questions whose features are in `rows` (see the criterion)."""
        if self._metric_cache[0] is rows:  # em and f1 of the same rows: decode once
            return self._metric_cache[1]
        preds, _ = answers_from_spans(
            self.examples, rows.tolist(), self.cfg.null_score_diff_threshold, self.meta.get("version", "1.1")
        )
        gold = {}
        for i in {int(r[0]) for r in rows.tolist()}:
            ex = self.examples[i]
            gold[ex["id"]] = [] if ex["is_impossible"] else ex["answers"]
        result = evaluate(gold, preds)
        self._metric_cache = (rows, result)  # holding `rows` keeps the identity check exact
        return result

    def max_positions(self):
        return self.cfg.max_positions

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary
