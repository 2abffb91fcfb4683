"""The DAM's two forms (product, the paper's formula; additive, the authors' code), and the form
and logit scale stored with a checkpoint (issue 17 item 2)."""

import argparse

import pytest
import torch
from conftest import run_cli, tiny_mlm_args

from fairseq_sparse.masks import DifferentiableAttentionMask
from fairseq_sparse.masks.dam import ADDITIVE_BIAS
from fairseq_sparse.models.sparse_roberta_options import fill_sparse_defaults
from fairseq_sparse.modules.sparse_multihead_attention import SparseMultiheadAttention


def _mask_gradients(form, seed=0, heads=2, length=6):
    """(mask value, dL/dM, dL/dscores) of one attention normalisation under a DAM of `form`."""
    torch.manual_seed(seed)
    dam = DifferentiableAttentionMask(heads, length, form=form, init_std=2.0)
    attn = SparseMultiheadAttention(8, heads, self_attention=True)
    attn.set_keep_mask_fn(dam.layer_mask_fn(0))
    dam(length)
    keep = dam.last_mask[0].detach().clone().requires_grad_()
    dam.last_mask = keep.unsqueeze(0)
    scores = torch.randn(3, heads, length, length, requires_grad=True)
    probs = attn._normalise_with_mask(scores, attn._keep_mask_fn(length, length))
    (probs * torch.randn_like(probs)).sum().backward()
    return keep.detach(), keep.grad, scores.grad


def test_additive_form_gradient_is_c_times_the_score_gradient_on_kept_entries_and_zero_on_dropped():
    keep, grad_mask, grad_scores = _mask_gradients("additive")
    kept = keep.bool()
    assert kept.any() and (~kept).any()
    # scores + (1 - M) c: dL/dM = -c dL/dscores, summed over the batch the mask is shared by
    expected = -ADDITIVE_BIAS * grad_scores.sum(0)
    assert torch.allclose(grad_mask[kept], expected[kept], rtol=1e-4, atol=1e-6)
    assert (grad_mask[~kept] == 0).all() and (grad_scores[:, ~kept] == 0).all()
    assert grad_mask[kept].abs().max() > 100  # the authors' x1e4


def test_the_two_forms_agree_forward_but_on_empty_rows_and_differ_in_the_dropped_entries_gradient():
    torch.manual_seed(1)
    dam_p = DifferentiableAttentionMask(2, 6, form="product", init_std=2.0)
    dam_a = DifferentiableAttentionMask(2, 6, form="additive", init_std=2.0)
    dam_a.load_state_dict({**dam_p.state_dict(), "dam_form": dam_a.dam_form})
    scores = torch.randn(3, 2, 6, 6)
    outs = []
    for dam in (dam_p, dam_a):
        attn = SparseMultiheadAttention(8, 2, self_attention=True)
        attn.set_keep_mask_fn(dam.layer_mask_fn(0))
        torch.manual_seed(2)
        dam(6)
        outs.append(attn._normalise_with_mask(scores, attn._keep_mask_fn(6, 6)))
    rows = dam_a.last_mask[0].sum(-1) > 0  # (heads, T): the rows that keep a key
    assert rows.any() and (~rows).any()
    assert torch.allclose(outs[0][:, rows], outs[1][:, rows], atol=1e-6)
    # a row that drew no key: nothing under the product form, the plain softmax under the additive one
    assert (outs[0][:, ~rows] == 0).all()
    # (e - 1e4 in float32 keeps about 3 decimals of e)
    assert torch.allclose(outs[1][:, ~rows], torch.softmax(scores[:, ~rows], -1), atol=1e-3)
    keep, grad_mask, _ = _mask_gradients("product")
    assert (grad_mask[~keep.bool()] != 0).any(), "the product form gives dropped keys a gradient"


def test_form_and_scale_are_stored_and_a_contradicting_module_is_refused():
    dam = DifferentiableAttentionMask(2, 8, form="additive", logit_scale=1.0)
    state = dam.state_dict()
    assert int(state["dam_form"]) == 1 and float(state["dam_logit_scale"]) == 1.0
    DifferentiableAttentionMask(2, 8, form="additive", logit_scale=1.0).load_state_dict(state)
    with pytest.raises(
        ValueError,
        match="form 'additive' and logit scale 1; this model was built with form 'product' and logit scale 1",
    ):
        DifferentiableAttentionMask(2, 8, form="product", logit_scale=1.0).load_state_dict(state)
    with pytest.raises(ValueError, match="scale 1; this model was built with form 'additive' and logit scale 500"):
        DifferentiableAttentionMask(2, 8, form="additive", logit_scale=500.0).load_state_dict(state)
    with pytest.raises(ValueError, match="DAM form must be one of"):
        DifferentiableAttentionMask(2, 8, form="sum")


def test_each_form_has_its_own_defaults():
    args = argparse.Namespace(dam_form="additive")
    fill_sparse_defaults(args)
    assert (args.dam_init, args.dam_logit_scale) == (0.0, 1.0)
    args = argparse.Namespace(dam_form=None, dam_logit_scale=30.0)
    fill_sparse_defaults(args)
    assert (args.dam_form, args.dam_init, args.dam_logit_scale) == ("product", 1.0, 30.0)


def test_a_run_whose_flags_contradict_the_checkpoint_is_refused(mlm_data, tmp_path):
    search = ["--criterion", "masked_lm_dam", "--dam-form", "additive"]
    run_cli(tiny_mlm_args(mlm_data, tmp_path / "a", arch="sparsebert_tiny", updates=1, extra=search))
    state = torch.load(tmp_path / "a" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    prefix = "encoder.sentence_encoder.attn_masks.dam."
    assert int(state[prefix + "dam_form"]) == 1 and float(state[prefix + "dam_logit_scale"]) == 1.0
    restore = [
        "--restore-file",
        tmp_path / "a" / "checkpoint_last.pt",
        "--reset-optimizer",
        "--reset-dataloader",
        "--reset-meters",
        "--reset-lr-scheduler",
    ]
    result = run_cli(
        tiny_mlm_args(
            mlm_data,
            tmp_path / "b",
            arch="sparsebert_tiny",
            updates=1,
            extra=[*search, "--dam-logit-scale", "500", *restore],
        ),
        check=False,
    )
    assert result.returncode != 0
    assert (
        "trained with form 'additive' and logit scale 1; this model was built with form 'additive' and "
        "logit scale 500" in result.stderr
    ), result.stderr[-2000:]
    run_cli(tiny_mlm_args(mlm_data, tmp_path / "c", arch="sparsebert_tiny", updates=1, extra=[*search, *restore]))
