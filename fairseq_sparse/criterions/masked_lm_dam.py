"""masked_lm_dam: masked-LM loss plus SparseBERT's L1 penalty on the learned attention mask.

objective = MLM loss (mean over masked tokens) + dam_lambda * ||M||_1, where M is the 0/1
mask sampled in this forward pass (its gradient reaches the mask logits straight-through).
fairseq divides the summed loss by sample_size, so the penalty is added times sample_size.
The default lambda depends on the DAM's form: the authors' 5e-5 belongs to their additive form
(a kept entry's MLM gradient is 1e4 times its score's), 1e-5 to the product form at logit
scale 500 (examples/sparsebert/README.md has the searches that chose it).
"""

import math
from dataclasses import dataclass, field
from typing import Optional

from fairseq.criterions import register_criterion
from fairseq.criterions.masked_lm import MaskedLmConfig
from fairseq.logging import metrics

from .stock_with_stats import MaskedLmSparseLoss


@dataclass
class MaskedLmDamConfig(MaskedLmConfig):
    dam_lambda: Optional[float] = field(
        default=None,
        metadata={"help": "weight of ||M||_1 (default: 1e-5 with --dam-form product, the authors' 5e-5 with additive)"},
    )
    dam_normalize_penalty: bool = field(
        default=False, metadata={"help": "divide ||M||_1 by the number of mask entries (the kept fraction)"}
    )
    dam_lambda_warmup_updates: int = field(
        default=0, metadata={"help": "raise the penalty weight linearly from 0 to --dam-lambda over this many updates"}
    )


DEFAULT_LAMBDA = {"product": 1e-5, "additive": 5e-5}


@register_criterion("masked_lm_dam", dataclass=MaskedLmDamConfig)
class MaskedLmDamLoss(MaskedLmSparseLoss):  # the attention statistics come with it
    def __init__(self, cfg: MaskedLmDamConfig, task):
        super().__init__(cfg, task)
        if cfg.dam_lambda is not None and not cfg.dam_lambda >= 0:
            raise ValueError(f"--dam-lambda must be >= 0, got {cfg.dam_lambda}")
        if cfg.dam_lambda_warmup_updates < 0:
            raise ValueError(f"--dam-lambda-warmup-updates must be >= 0, got {cfg.dam_lambda_warmup_updates}")
        self.dam_lambda = cfg.dam_lambda
        self.normalize = cfg.dam_normalize_penalty
        self.warmup = cfg.dam_lambda_warmup_updates

    def penalty_weight(self, num_updates, form="product"):
        """--dam-lambda (or the form's default), ramped linearly from 0 over --dam-lambda-warmup-updates."""
        lam = DEFAULT_LAMBDA[form] if self.dam_lambda is None else self.dam_lambda
        if self.warmup == 0:
            return lam
        return lam * min(1.0, num_updates / self.warmup)

    @staticmethod
    def _dam(model):
        encoder = getattr(getattr(model, "encoder", None), "sentence_encoder", None)
        dam = getattr(getattr(encoder, "attn_masks", None), "dam", None)
        if dam is None:
            raise ValueError(
                "criterion masked_lm_dam needs a model with a learned mask: "
                "--arch sparsebert_base/sparsebert_tiny, or sparse_roberta with --attn-mask dam"
            )
        return dam

    def forward(self, model, sample, reduce=True):
        dam = self._dam(model)
        loss, sample_size, logging_output = super().forward(model, sample, reduce)
        penalty = dam.l1_penalty(normalize=self.normalize)
        logging_output["mlm_loss"] = loss.data
        loss = loss + self.penalty_weight(dam.num_updates, dam.form) * penalty * sample_size
        logging_output["loss"] = loss.data
        logging_output["dam_l1"] = penalty.data
        logging_output["dam_count"] = 1
        for layer, density in enumerate(dam.densities()):
            logging_output[f"dam_density_l{layer}"] = density
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        MaskedLmSparseLoss.reduce_metrics(logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        count = sum(log.get("dam_count", 0) for log in logging_outputs)
        mlm = sum(log.get("mlm_loss", 0) for log in logging_outputs)
        metrics.log_scalar("mlm_loss", mlm / max(sample_size, 1) / math.log(2), sample_size, round=3)
        if count:
            metrics.log_scalar("dam_l1", sum(log.get("dam_l1", 0) for log in logging_outputs) / count, count, round=4)
            keys = sorted({k for log in logging_outputs for k in log if k.startswith("dam_density_l")})
            for key in keys:
                metrics.log_scalar(key, sum(log.get(key, 0) for log in logging_outputs) / count, count, round=4)
