"""adam_groups: fairseq's Adam with parameter groups, usable from the plain command line.

fairseq gives an optimizer a flat list of parameters (no names), so the groups come from what
the parameters say about themselves:
  - `p.param_group == "dam"` (SparseBERT's mask logits): learning rate times --dam-lr-scale and
    no weight decay, as in the authors' code;
  - with --no-decay-bias-norm, 1-D parameters (biases, LayerNorm weights and biases) get no
    weight decay, as in BERT fine-tuning.
fairseq's lr schedulers set one learning rate; each group keeps its own multiple of it.
fairseq's FP16Optimizer copies `param_group` onto its fp32 parameters; a flattened fp16 copy
(--fp16 without --fp16-no-flatten-grads) is one tensor and cannot be split, so that case is
refused with a message.
"""

from dataclasses import dataclass, field

from fairseq.optim import register_optimizer
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig


@dataclass
class GroupedAdamConfig(FairseqAdamConfig):
    dam_lr_scale: float = field(
        default=1.0, metadata={"help": "learning rate of the DAM mask logits, as a multiple of --lr"}
    )
    no_decay_bias_norm: bool = field(
        default=False, metadata={"help": "no weight decay on biases and LayerNorm parameters (1-D)"}
    )


def group_parameters(params, weight_decay, dam_lr_scale=1.0, no_decay_bias_norm=False):
    """Split parameters into torch optimizer groups: main, no-decay, DAM logits (empty ones dropped).

    Each group carries `lr_scale`, its learning rate as a multiple of the scheduled one.
    """
    if not dam_lr_scale > 0:
        raise ValueError(f"--dam-lr-scale must be > 0, got {dam_lr_scale}")
    main, no_decay, dam = [], [], []
    for p in params:
        if getattr(p, "param_group", None) == "dam":
            dam.append(p)
        elif no_decay_bias_norm and p.dim() <= 1:
            no_decay.append(p)
        else:
            main.append(p)
    groups = [
        {"params": main, "weight_decay": weight_decay, "lr_scale": 1.0, "name": "main"},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0, "name": "no_decay"},
        {"params": dam, "weight_decay": 0.0, "lr_scale": float(dam_lr_scale), "name": "dam"},
    ]
    return [g for g in groups if g["params"]]


@register_optimizer("adam_groups", dataclass=GroupedAdamConfig)
class GroupedAdam(FairseqAdam):
    def __init__(self, cfg: GroupedAdamConfig, params):
        params = list(params)
        flattened = len(params) == 1 and params[0].dim() == 1  # no real model has one 1-D parameter
        if flattened and (cfg.dam_lr_scale != 1.0 or cfg.no_decay_bias_norm):
            raise ValueError(
                "--optimizer adam_groups got one flattened fp16 parameter copy and cannot split it "
                "into groups: add --fp16-no-flatten-grads (or use --amp / --bf16)"
            )
        super().__init__(cfg, group_parameters(params, cfg.weight_decay, cfg.dam_lr_scale, cfg.no_decay_bias_norm))
        base = self.get_lr()
        for group in self.param_groups:
            group["lr"] = base * group["lr_scale"]

    def get_lr(self):
        group = self.param_groups[0]
        return group["lr"] / group.get("lr_scale", 1.0)

    def set_lr(self, lr):
        for group in self.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
