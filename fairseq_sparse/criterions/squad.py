"""`--criterion squad_span`: cross-entropy of the answer's start and end positions.

Loss = (CE(start) + CE(end)) / 2 per feature, over all non-padding positions; an
unanswerable question (SQuAD v2.0), or a window that misses the answer, targets position 0
(<s>, BERT's [CLS]). At validation the best legal span of each feature (start within the
context where the window gives it most context, end >= start, at most --max-answer-length
tokens) and its null score are logged for the task's official EM/F1.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from ..data.squad import best_spans
from .density_logging import attention_counts, reduce_attention_counts


@dataclass
class SquadSpanConfig(FairseqDataclass):
    pass


@register_criterion("squad_span", dataclass=SquadSpanConfig)
class SquadSpanCriterion(FairseqCriterion):
    def __init__(self, cfg, task):
        super().__init__(task)
        if not hasattr(task.cfg, "span_head_name"):
            raise ValueError("--criterion squad_span needs --task squad")
        self.head = task.cfg.span_head_name

    def forward(self, model, sample, reduce=True):
        logits, _ = model(**sample["net_input"], features_only=True, classification_head_name=self.head)
        start_logits, end_logits = logits.float().unbind(dim=-1)
        pad = sample["net_input"]["src_tokens"].eq(self.padding_idx)
        start_logits = start_logits.masked_fill(pad, -1e4)
        end_logits = end_logits.masked_fill(pad, -1e4)
        target = sample["target"]
        loss = 0.5 * (
            F.cross_entropy(start_logits, target[:, 0], reduction="sum")
            + F.cross_entropy(end_logits, target[:, 1], reduction="sum")
        )
        n = target.size(0)
        start_pred, end_pred = start_logits.argmax(-1), end_logits.argmax(-1)
        log = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": n,
            "sample_size": n,
            "ncorrect_span": ((start_pred == target[:, 0]) & (end_pred == target[:, 1])).sum().item(),
            **attention_counts(model),
        }
        if not model.training:
            start, end, score = best_spans(
                start_logits,
                end_logits,
                sample["start_ok"] & ~pad,
                sample["end_ok"] & ~pad,
                self.task.cfg.max_answer_length,
            )
            words = sample["words"]
            null = start_logits[:, 0] + end_logits[:, 0]
            log["squad_spans"] = torch.stack(
                [
                    sample["example"].double(),
                    words.gather(1, start[:, None]).squeeze(1).double(),
                    words.gather(1, end[:, None]).squeeze(1).double(),
                    score.double(),
                    null.double(),
                ],
                dim=1,
            ).cpu()
        return loss, n, log

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss = sum(log.get("loss", 0) for log in logging_outputs)
        size = sum(log.get("sample_size", 0) for log in logging_outputs)
        correct = sum(log.get("ncorrect_span", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss / max(size, 1) / math.log(2), size, round=3)
        metrics.log_scalar("span_acc", 100.0 * correct / max(size, 1), size, round=1)
        reduce_attention_counts(logging_outputs)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False  # validation rows are per-feature tensors, gathered rather than summed
