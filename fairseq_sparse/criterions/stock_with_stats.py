"""masked_lm_sparse and sentence_prediction_sparse: fairseq's masked_lm and sentence_prediction,
unchanged, plus the attention statistics of a sparse_roberta model (attn_density_l*,
attn_support_l*; criterions/density_logging.py). The stock names train the same model but log
no statistics: fairseq lets a plugin add criteria, not change its own."""

from fairseq.criterions import register_criterion
from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss
from fairseq.criterions.sentence_prediction import SentencePredictionConfig, SentencePredictionCriterion

from .density_logging import attention_counts, reduce_attention_counts


@register_criterion("masked_lm_sparse", dataclass=MaskedLmConfig)
class MaskedLmSparseLoss(MaskedLmLoss):
    def forward(self, model, sample, reduce=True):
        loss, sample_size, logging_output = super().forward(model, sample, reduce)
        logging_output.update(attention_counts(model))
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        MaskedLmLoss.reduce_metrics(logging_outputs)
        reduce_attention_counts(logging_outputs)


@register_criterion("sentence_prediction_sparse", dataclass=SentencePredictionConfig)
class SentencePredictionSparseCriterion(SentencePredictionCriterion):
    def forward(self, model, sample, reduce=True):
        loss, sample_size, logging_output = super().forward(model, sample, reduce)
        logging_output.update(attention_counts(model))
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        SentencePredictionCriterion.reduce_metrics(logging_outputs)
        reduce_attention_counts(logging_outputs)
