"""--optimizer adam_groups: groups from parameter tags, each keeping its multiple of the scheduled lr."""

import pytest
import torch
from omegaconf import OmegaConf

import fairseq_sparse  # noqa: F401  (registers the optimizer)
from fairseq_sparse.optim.grouped_adam import GroupedAdam, GroupedAdamConfig


def _cfg(**kw):
    cfg = OmegaConf.structured(GroupedAdamConfig(lr=[1e-3], weight_decay=0.01, tpu=False, **kw))
    return cfg


def _params():
    weight = torch.nn.Parameter(torch.randn(4, 3))
    bias = torch.nn.Parameter(torch.randn(4))
    dam = torch.nn.Parameter(torch.zeros(2, 5))
    dam.param_group = "dam"
    return weight, bias, dam


def test_groups_follow_tags_and_scheduler_keeps_ratios():
    weight, bias, dam = _params()
    opt = GroupedAdam(_cfg(dam_lr_scale=10.0, no_decay_bias_norm=True), [weight, bias, dam])
    groups = {g["name"]: g for g in opt.param_groups}
    assert [p is weight for p in groups["main"]["params"]] == [True]
    assert [p is bias for p in groups["no_decay"]["params"]] == [True]
    assert [p is dam for p in groups["dam"]["params"]] == [True]
    assert groups["main"]["weight_decay"] == 0.01
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["dam"]["weight_decay"] == 0.0
    assert groups["dam"]["lr"] == pytest.approx(1e-2)
    opt.set_lr(5e-4)  # what a scheduler does
    assert opt.get_lr() == pytest.approx(5e-4)
    assert groups["main"]["lr"] == pytest.approx(5e-4) and groups["dam"]["lr"] == pytest.approx(5e-3)


def test_default_is_plain_adam_grouping():
    weight, bias, dam = _params()
    opt = GroupedAdam(_cfg(), [weight, bias, dam])
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"main", "dam"}  # bias decays like the weights without the flag
    assert groups["dam"]["lr"] == pytest.approx(1e-3)


def test_dam_step_is_scaled():
    """Adam moves each parameter by about lr per step: the DAM logits move lr_scale times further."""
    weight, _, dam = _params()
    opt = GroupedAdam(_cfg(dam_lr_scale=10.0), [weight, dam])
    weight.grad = torch.ones_like(weight)
    dam.grad = torch.ones_like(dam)
    w0 = weight.detach().clone()
    opt.step()
    assert torch.allclose(dam.detach(), torch.full_like(dam, -1e-2), atol=1e-5)
    assert torch.allclose(w0 - weight.detach(), torch.full_like(weight, 1e-3) + 1e-3 * 0.01 * w0, atol=1e-5)


def test_bad_scale_and_flattened_copy_are_refused():
    weight, bias, dam = _params()
    with pytest.raises(ValueError, match="--dam-lr-scale must be > 0, got 0"):
        GroupedAdam(_cfg(dam_lr_scale=0.0), [weight, dam])
    flat = torch.nn.Parameter(torch.zeros(100))
    with pytest.raises(ValueError, match="--fp16-no-flatten-grads"):
        GroupedAdam(_cfg(no_decay_bias_norm=True), [flat])
