"""SparseBERT's Differentiable Attention Mask, and masked attention with a gradient to the mask."""

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fairseq_sparse.masks import DifferentiableAttentionMask, binarize_dam_logits, gumbel_sigmoid, masked_normalize
from fairseq_sparse.normalizers import entmax15, entmax_bisect, sparsegen_lin, sparsemax


@contextlib.contextmanager
def one_thread():
    """Tiny models run faster, and steadier on a busy machine, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----- Gumbel-sigmoid straight-through ---------------------------------------------------


def test_gumbel_sigmoid_is_hard_forward_and_soft_backward():
    torch.manual_seed(0)
    logits = torch.randn(50, requires_grad=True)
    noise = torch.randn(50)
    hard = gumbel_sigmoid(logits, tau=0.7, noise=noise)
    assert torch.equal(hard.detach(), (logits + noise > 0).float())  # exactly 0/1
    upstream = torch.randn(50)
    (hard * upstream).sum().backward()
    soft = torch.sigmoid((logits.detach() + noise) / 0.7)
    assert torch.allclose(logits.grad, upstream * soft * (1 - soft) / 0.7, atol=1e-6)


def test_gumbel_noise_is_logistic():
    torch.manual_seed(0)
    samples = gumbel_sigmoid(torch.full((20000,), 1.0), hard=False)
    # P(sigmoid(1 + L) > 0.5) = P(L > -1) = sigmoid(1) for a standard logistic L
    assert float((samples > 0.5).float().mean()) == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item(), abs=0.015)


# ----- the module ------------------------------------------------------------------------


@pytest.mark.parametrize("structure", ["structured", "unstructured"])
@pytest.mark.parametrize("no_diagonal", [False, True])
def test_training_sample_structure(structure, no_diagonal):
    torch.manual_seed(0)
    dam = DifferentiableAttentionMask(3, 16, structure, num_layers=2, no_diagonal=no_diagonal)
    mask = dam(9)
    assert mask.shape == (2, 3, 9, 9) and mask.requires_grad
    assert set(torch.unique(mask.detach()).tolist()) <= {0.0, 1.0}
    assert torch.equal(mask, mask.transpose(-1, -2))
    if no_diagonal:
        assert not mask.diagonal(dim1=-2, dim2=-1).any()
    if structure == "structured":  # Toeplitz: one value per distance
        for dist in range(1, 9):
            band = mask.diagonal(offset=dist, dim1=-2, dim2=-1)
            assert torch.equal(band, band[..., :1].expand_as(band))
    assert dam(9, layer=1).shape == (3, 9, 9)


@pytest.mark.parametrize("structure", ["structured", "unstructured"])
def test_eval_mask_is_deterministic_threshold(structure):
    torch.manual_seed(0)
    dam = DifferentiableAttentionMask(2, 12, structure, no_diagonal=True).eval()
    first, second = dam(7), dam(7)
    assert torch.equal(first, second) and not first.requires_grad
    expected = binarize_dam_logits(dam.dam_logits, 7, no_diagonal=True).float()
    assert torch.equal(first, expected)
    probs = torch.sigmoid(dam.dam_logits.detach())
    if structure == "structured":
        assert bool(first[0, 1, 2, 5]) == bool(probs[0, 1, 3] > 0.5)
    else:
        assert bool(first[0, 1, 5, 2]) == bool(probs[0, 1, 2, 5] > 0.5)
    assert not first[0].diagonal(dim1=-2, dim2=-1).any()
    exported = dam.export(7)
    assert exported.dtype == np.bool_ and exported.shape == (2, 7, 7)
    assert np.array_equal(exported, first[0].numpy().astype(bool))
    assert dam.export_densities(7)["density"] == pytest.approx(float(first.mean()), abs=1e-6)


def test_gradients_reach_the_logits():
    torch.manual_seed(0)
    dam = DifferentiableAttentionMask(2, 16, "structured", no_diagonal=True)
    mask = dam(10)
    (mask * torch.randn(1, 2, 10, 10)).sum().backward()
    grad = dam.dam_logits.grad[0]
    assert (grad[:, 1:10] != 0).all()  # every distance used by a length-10 mask
    assert (grad[:, 10:] == 0).all() and (grad[:, 0] == 0).all()  # unused, and the held diagonal

    dam = DifferentiableAttentionMask(2, 8, "unstructured", num_layers=3)
    mask = dam(6)
    (mask * torch.randn(3, 2, 6, 6)).sum().backward()
    grad = dam.dam_logits.grad[..., :6, :6]
    upper = torch.triu(torch.ones(6, 6, dtype=torch.bool))
    assert (grad[..., upper] != 0).all() and (grad[..., ~upper] == 0).all()
    assert (dam.dam_logits.grad[..., 6:, :] == 0).all()


def test_l1_penalty_density_and_hooks():
    torch.manual_seed(0)
    dam = DifferentiableAttentionMask(4, 32, "structured", num_layers=2, no_diagonal=True)
    with pytest.raises(RuntimeError, match="call the module first"):
        dam.l1_penalty()
    mask = dam(11)
    assert float(dam.l1_penalty()) == float(mask.sum())
    normalised = dam.l1_penalty(normalize=True)
    assert float(normalised) == pytest.approx(float(mask.sum()) / (2 * 4 * (121 - 11)))
    normalised.backward()
    assert dam.dam_logits.grad.abs().sum() > 0
    assert torch.allclose(dam.densities(), mask.detach().mean(dim=(1, 2, 3)))

    hook = dam.layer_mask_fn(1)
    assert hook(11, 11) is not None and hook(11, 11).dtype == torch.float32 and hook(11, 11).requires_grad
    with pytest.raises(RuntimeError, match="no mask drawn for 12 x 12"):
        hook(12, 12)
    dam.eval()
    dam(11)
    assert hook(11, 11).dtype == torch.bool
    assert dam.dam_logits.param_group == "dam"
    assert bool(dam.state_dict()["dam_no_diagonal"])


def test_temperature_annealing():
    dam = DifferentiableAttentionMask(1, 8, tau=2.0, tau_end=0.5, tau_anneal_steps=100)
    dam.set_num_updates(0)
    assert dam.tau == pytest.approx(2.0)
    dam.set_num_updates(50)
    assert dam.tau == pytest.approx(1.0)  # geometric midpoint
    dam.set_num_updates(1000)
    assert dam.tau == pytest.approx(0.5)
    constant = DifferentiableAttentionMask(1, 8, tau=0.8)
    constant.set_num_updates(500)
    assert constant.tau == 0.8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"structure": "banded"}, "structure must be one of"),
        ({"tau": 0}, "tau must be > 0, got 0"),
        ({"num_layers": 0}, "num_layers must be a positive integer, got 0"),
        ({"tau_end": -1.0}, "tau_end must be > 0"),
        ({"tau_anneal_steps": 1.5}, "tau_anneal_steps must be a non-negative integer"),
        ({"logit_scale": 0}, "logit_scale must be a finite number > 0, got 0"),
        ({"init_mean": float("nan")}, "init_mean must be a finite number, got nan"),
    ],
)
def test_constructor_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DifferentiableAttentionMask(2, 8, **kwargs)


def test_logit_scale_multiplies_the_adam_step_and_init_sets_the_start():
    torch.manual_seed(0)
    dam = DifferentiableAttentionMask(2, 8, init_mean=2.0, init_std=0.0, logit_scale=25.0)
    assert torch.allclose(dam.mask_logits(), torch.full((1, 2, 8), 2.0))  # the logits start at init_mean
    assert torch.allclose(dam.dam_logits, torch.full((1, 2, 8), 2.0 / 25.0))
    before = dam.mask_logits().detach().clone()
    opt = torch.optim.Adam(dam.parameters(), lr=1e-3)
    dam(8)
    dam.l1_penalty().backward()
    opt.step()
    # Adam's first step moves the parameter by lr; the logit moves by logit_scale x lr
    step = before - dam.mask_logits().detach()
    assert torch.allclose(step[..., 1:], torch.full_like(step[..., 1:], 25e-3), rtol=1e-3)
    dam.eval()
    assert dam(8).all()  # dense start: every logit > 0
    assert torch.equal(dam.keep_mask(8), binarize_dam_logits(dam.mask_logits(), 8))


def test_no_diagonal_follows_the_checkpoint():
    searched = DifferentiableAttentionMask(2, 8, no_diagonal=True, init_mean=3.0)
    restored = DifferentiableAttentionMask(2, 8, no_diagonal=False, init_mean=3.0)
    restored.load_state_dict(searched.state_dict())
    assert restored.no_diagonal
    assert not restored.eval()(6)[0].diagonal(dim1=-2, dim2=-1).any()
    assert not restored.train()(6)[0].diagonal(dim1=-2, dim2=-1).any()
    searched = DifferentiableAttentionMask(2, 8, no_diagonal=False, init_mean=3.0)
    restored = DifferentiableAttentionMask(2, 8, no_diagonal=True, init_mean=3.0)
    restored.load_state_dict(searched.state_dict())
    assert not restored.no_diagonal and restored.eval()(6)[0].diagonal(dim1=-2, dim2=-1).all()


def test_length_and_layer_validation():
    dam = DifferentiableAttentionMask(2, 8, num_layers=3)
    with pytest.raises(ValueError, match="length must be an integer in \\[1, 8\\], got 9"):
        dam(9)
    with pytest.raises(ValueError, match="3 per-layer masks, got layer 3"):
        dam(4, layer=3)


# ----- masked_normalize: the mask gradient ----------------------------------------------


def _mask_and_scores(seed=0, batch=2, heads=3, length=6):
    torch.manual_seed(seed)
    keep = torch.rand(heads, length, length) > 0.4
    keep[..., 0] = True  # no empty row
    scores = torch.randn(batch, heads, length, length, dtype=torch.float64) * 2
    # A dropped key scores below the row's best kept key, so the weight it would get if switched
    # on stays below 1 and the (capped) mask gradient is the exact derivative.
    best_kept = scores.masked_fill(~keep, float("-inf")).amax(dim=-1, keepdim=True)
    below = best_kept - 1.5 * torch.rand(batch, heads, length, length, dtype=torch.float64)
    scores = torch.where(keep, scores, torch.minimum(scores, below))
    return keep.double().requires_grad_(), scores


def test_softmax_mask_gradient_is_the_product_form_derivative():
    mask, scores = _mask_and_scores()
    upstream = torch.randn_like(scores)
    probs = masked_normalize(scores, mask, "softmax")
    (probs * upstream).sum().backward()
    reference_mask = mask.detach().clone().requires_grad_()
    weights = reference_mask * torch.exp(scores)
    paper = weights / weights.sum(dim=-1, keepdim=True)  # A = M exp(e) / sum(M exp(e))
    (paper * upstream).sum().backward()
    assert torch.allclose(probs, paper, atol=1e-12)
    assert torch.allclose(mask.grad, reference_mask.grad, atol=1e-10)
    assert (mask.grad[mask.detach() == 0] != 0).all()  # dropped keys get a gradient too


def _weighted_entmax(scores, weights, alpha, scale=1.0):
    """Reference: p_j = M_j [(alpha-1) s z_j - tau]_+^(1/(alpha-1)), sum p = 1, tau by bisection."""
    x = (alpha - 1) * scale * scores
    beta = 1.0 / (alpha - 1)
    hi = x.amax(dim=-1, keepdim=True)
    lo = hi - 10.0
    for _ in range(120):
        mid = (lo + hi) / 2
        above = (weights * (x - mid).clamp(min=0) ** beta).sum(dim=-1, keepdim=True) > 1
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return weights * (x - (lo + hi) / 2).clamp(min=0) ** beta


@pytest.mark.parametrize(
    "name, kwargs, alpha, scale",
    [
        ("sparsemax", {}, 2.0, 1.0),
        ("sparsegen_lin", {"lam": -2.0}, 2.0, 1.0 / 3.0),
        ("entmax15", {}, 1.5, 1.0),
        ("entmax_bisect", {"alpha": 1.3, "n_iter": 100}, 1.3, 1.0),
    ],
)
def test_sparse_mask_gradient_matches_finite_differences(name, kwargs, alpha, scale):
    mask, scores = _mask_and_scores(seed=1, batch=2, heads=2, length=5)
    upstream = torch.randn_like(scores)
    probs = masked_normalize(scores, mask, name, **kwargs)
    hard = mask.detach()
    reference = _weighted_entmax(scores, hard.expand_as(scores), alpha, scale)
    assert torch.allclose(probs, reference, atol=1e-8)
    (probs * upstream).sum().backward()
    numeric = torch.zeros_like(hard)
    eps = 1e-6
    for index in np.ndindex(*hard.shape):
        step = -eps if hard[index] == 1 else eps  # stay inside [0, 1]
        moved = hard.clone()
        moved[index] += step
        change = _weighted_entmax(scores, moved.expand_as(scores), alpha, scale) - reference
        numeric[index] = (change * upstream).sum() / step
    assert torch.allclose(mask.grad, numeric, atol=2e-4)
    assert (mask.grad[hard == 0] != 0).any()  # some dropped key would enter the support


@pytest.mark.parametrize("name", ["softmax", "sparsemax", "entmax15"])
def test_forward_equals_normaliser_over_kept_keys_with_padding(name):
    mask, scores = _mask_and_scores(seed=2)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    probs = masked_normalize(scores.float(), mask.float(), name, key_padding_mask=pad)
    dropped = (mask.detach() == 0) | pad[:, None, None, :]
    fn = {"softmax": lambda z: torch.softmax(z, -1), "sparsemax": sparsemax, "entmax15": entmax15}[name]
    expected = fn(scores.float().masked_fill(dropped, float("-inf")))
    assert torch.allclose(probs, expected, atol=1e-6)
    assert (probs[dropped.expand_as(probs)] == 0).all()
    (probs * torch.randn_like(probs)).sum().backward()


def test_padded_keys_give_no_mask_gradient_and_scores_keep_their_gradient():
    torch.manual_seed(3)
    mask = torch.ones(2, 5, 5, requires_grad=True)
    scores = torch.randn(1, 2, 5, 5, requires_grad=True)
    pad = torch.tensor([[False, False, False, True, True]])
    probs = masked_normalize(scores, mask, "softmax", key_padding_mask=pad)
    (probs * torch.randn_like(probs)).sum().backward()
    assert (mask.grad[..., 3:] == 0).all() and (mask.grad[..., :3] != 0).all()
    plain = scores.detach().clone().requires_grad_()
    ref = torch.softmax(plain.masked_fill(pad[:, None, None, :], float("-inf")), -1)
    assert torch.allclose(probs, ref, atol=1e-6)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("softmax", {}),
        ("sparsemax", {}),
        ("entmax15", {}),
        ("entmax_bisect", {"alpha": torch.tensor([1.2, 1.8]).view(1, 2, 1, 1)}),
    ],
)
def test_empty_row_attends_to_nothing_with_finite_gradients(name, kwargs):
    torch.manual_seed(4)
    mask = torch.ones(2, 5, 5)
    mask[0, 1] = 0  # head 0, query 1 keeps nothing
    mask.requires_grad_()
    scores = torch.randn(2, 2, 5, 5, requires_grad=True)
    probs = masked_normalize(scores, mask, name, **kwargs)
    assert (probs[:, 0, 1] == 0).all() and torch.allclose(probs[:, 1].sum(-1), torch.ones(2, 5), atol=1e-5)
    (probs * torch.randn_like(probs)).sum().backward()
    assert torch.isfinite(mask.grad).all() and torch.isfinite(scores.grad).all()
    assert (scores.grad[:, 0, 1] == 0).all()
    assert (mask.grad[0, 1] != 0).any()  # the learned mask can switch a key back on


def test_mask_gradient_is_bounded_for_a_towering_dropped_key():
    scores = torch.zeros(1, 1, 1, 4)
    scores[..., 3] = 60.0  # exp(60) times any kept key
    mask = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]], requires_grad=True)
    upstream = torch.tensor([0.0, 0.0, 0.0, 1.0]).view(1, 1, 1, 4)
    (masked_normalize(scores, mask, "softmax") * upstream).sum().backward()
    assert float(mask.grad[0, 0, 3]) == pytest.approx(1.0)  # w capped at 1: g_j - sum(p g) = 1


def test_bool_mask_matches_float_mask_values():
    mask, scores = _mask_and_scores(seed=5)
    a = masked_normalize(scores, mask.detach() > 0.5, "sparsegen_lin", lam=-1.0)
    b = masked_normalize(scores, mask, "sparsegen_lin", lam=-1.0)
    expected = sparsegen_lin(scores.masked_fill(mask.detach() == 0, float("-inf")), lam=-1.0)
    assert torch.equal(a, b) and torch.allclose(a, expected)
    alpha = torch.full((1, 3, 1, 1), 1.4, dtype=torch.float64)
    c = masked_normalize(scores, mask, "entmax_bisect", alpha=alpha)
    assert torch.allclose(c, entmax_bisect(scores.masked_fill(mask.detach() == 0, float("-inf")), alpha))
    with pytest.raises(ValueError, match="unknown normalizer 'softmin'"):
        masked_normalize(scores, mask, "softmin")
    with pytest.raises(ValueError, match="does not fit scores"):
        masked_normalize(scores, mask[..., :5], "softmax")


# ----- learning: penalty and a synthetic search ----------------------------------------


class TinyAttention(nn.Module):
    """Embeddings + positions, one multi-head attention under the DAM mask, a linear readout."""

    def __init__(self, vocab, length, dim, heads, dam, normalizer):
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(length, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.readout = nn.Linear(dim, vocab)
        self.heads, self.dam, self.normalizer = heads, dam, normalizer

    def forward(self, x):
        batch, n = x.shape
        h = self.tokens(x) + self.positions.weight[:n]
        q, k, v = self.qkv(h).view(batch, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        probs = masked_normalize(scores, self.dam(n)[0], self.normalizer)
        return self.readout((probs @ v).transpose(1, 2).reshape(batch, n, -1))


def search(lam, normalizer="softmax", distance=3, length=12, vocab=8, heads=2, steps=200, seed=0):
    """Train on 'label_i = token_{i+distance}' with an L1-penalised DAM; return (eval keep per distance, accuracy)."""
    with one_thread():
        torch.manual_seed(seed)
        dam = DifferentiableAttentionMask(heads, length, "structured")
        model = TinyAttention(vocab, length, 32, heads, dam, normalizer)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
        for _ in range(steps):
            x = torch.randint(vocab, (64, length))
            y = torch.full_like(x, -100)
            y[:, : length - distance] = x[:, distance:]
            loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1), ignore_index=-100)
            optimizer.zero_grad()
            (loss + lam * dam.l1_penalty(normalize=True)).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            x = torch.randint(vocab, (256, length))
            accuracy = float((model(x)[:, : length - distance].argmax(-1) == x[:, distance:]).float().mean())
        return dam.dam_logits[0, :, :length].detach() > 0, accuracy


def test_density_falls_as_lambda_grows():
    densities = [float(search(lam)[0].float().mean()) for lam in (0.0, 0.3, 3.0)]
    assert densities[0] > densities[1] > densities[2]
    assert densities[0] > 0.9 and densities[2] < 0.2


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax"])
def test_search_keeps_the_informative_distance(normalizer):
    keep, accuracy = search(1.0, normalizer)
    assert keep[:, 3].any()  # some head keeps distance 3
    others = torch.cat([keep[:, :3], keep[:, 4:]], dim=1)
    assert float(others.float().mean()) <= 0.25  # and most other distances are dropped
    assert accuracy > 0.9  # the deterministic (binarised) mask still solves the task
