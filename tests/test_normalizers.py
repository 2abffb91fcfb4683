"""The normalisers against their definitions, the `entmax` package, and autograd.

Tests taking the `backend` fixture run twice: on the fused C++ kernels (skipped, with the
reason, when the extension is not built) and on the eager PyTorch fallback.
"""

import contextlib
import importlib.util
import logging
import sys

import entmax as ref
import pytest
import torch

from fairseq_sparse.normalizers import backend as _backend
from fairseq_sparse.normalizers import entmax15, entmax_bisect, get_normalizer, softmax, sparsegen_lin, sparsemax
from fairseq_sparse.normalizers.backend import eager_backend

BUILT = importlib.util.find_spec("fairseq_sparse._C") is not None


@pytest.fixture(params=["fused", "eager"])
def backend(request):
    if request.param == "eager":
        with eager_backend():
            yield "eager"
    else:
        if _backend.backend() != "fused":
            pytest.skip("fused C++ normalisers not built (pip install --no-build-isolation -e .)")
        yield "fused"


NEG_INF = float("-inf")
SPARSE = {
    "sparsemax": sparsemax,
    "sparsegen_lin": lambda x, dim=-1: sparsegen_lin(x, -3.0, dim=dim),
    "entmax15": entmax15,
    "entmax_bisect": lambda x, dim=-1: entmax_bisect(x, 1.3, dim=dim, n_iter=100),
}


def cases():
    g = torch.Generator().manual_seed(0)
    yield "random", torch.randn(32, 37, generator=g, dtype=torch.float64)
    ties = torch.randint(0, 3, (32, 37), generator=g).double()
    yield "ties", ties
    yield "large", torch.randn(32, 37, generator=g, dtype=torch.float64) * 1e4
    yield "tiny", torch.randn(32, 37, generator=g, dtype=torch.float64) * 1e-4
    masked = torch.randn(32, 37, generator=g, dtype=torch.float64)
    masked[:, 20:] = NEG_INF
    masked[5, :] = NEG_INF
    yield "masked", masked


REFERENCE = {
    "sparsemax": lambda x: ref.sparsemax(x, dim=-1),
    "entmax15": lambda x: ref.entmax15(x, dim=-1),
    "sparsegen_lin": lambda x: ref.sparsemax(x / 4.0, dim=-1),
    "entmax_bisect": lambda x: ref.entmax_bisect(x, 1.3, dim=-1, n_iter=100),
}


@pytest.mark.parametrize("name", sorted(SPARSE))
@pytest.mark.parametrize("case", [c[0] for c in cases()])
def test_agrees_with_entmax_package(name, case, backend):
    x = dict(cases())[case]
    ours = SPARSE[name](x)
    finite_rows = torch.isfinite(x).any(dim=-1)
    theirs = REFERENCE[name](x[finite_rows])  # the package crashes or gives NaN on all -inf rows
    assert torch.allclose(ours[finite_rows], theirs, atol=1e-5, rtol=0), (ours[finite_rows] - theirs).abs().max()


@pytest.mark.parametrize("name", sorted(SPARSE) + ["softmax"])
def test_simplex_masks_and_fully_masked_rows(name, backend):
    fn = softmax if name == "softmax" else SPARSE[name]
    x = dict(cases())["masked"]
    p = fn(x)
    assert not torch.isnan(p).any()
    assert (p >= 0).all()
    assert (p[:, 20:] == 0).all(), "masked (-inf) entries must get exactly 0"
    assert (p[5] == 0).all(), "a fully masked row returns zeros"
    sums = p.sum(-1)
    keep = torch.ones(32, dtype=torch.bool)
    keep[5] = False
    assert torch.allclose(sums[keep], torch.ones_like(sums[keep]), atol=1e-9)


def test_sparsegen_lin_is_scaled_sparsemax_and_limits(backend):
    torch.manual_seed(3)
    x = torch.randn(16, 50, dtype=torch.float64)
    for lam in (-8.0, -4.0, -0.5, 0.0, 0.3, 0.9):
        assert torch.allclose(sparsegen_lin(x, lam), sparsemax(x / (1 - lam)), atol=1e-12)
    # lam -> 1 approaches argmax, very negative lam approaches uniform
    near_argmax = sparsegen_lin(x, 0.999)
    assert torch.equal(near_argmax.argmax(-1), x.argmax(-1)) and (near_argmax.max(-1).values > 0.99).all()
    near_uniform = sparsegen_lin(torch.randn(4, 10, dtype=torch.float64) * 0.1, -1e4)
    assert torch.allclose(near_uniform, torch.full_like(near_uniform, 0.1), atol=1e-3)


def test_entmax_bisect_endpoints(backend):
    torch.manual_seed(4)
    x = torch.randn(8, 30, dtype=torch.float64) * 3
    assert torch.allclose(entmax_bisect(x, 2.0), sparsemax(x), atol=1e-9)
    assert torch.allclose(entmax_bisect(x, 1.5), entmax15(x), atol=1e-9)
    assert torch.allclose(entmax_bisect(x, 1.001, n_iter=200), torch.softmax(x, -1), atol=5e-3)


@pytest.mark.parametrize("name", sorted(SPARSE))
def test_gradcheck_float64(name, backend):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SPARSE[name], (x,))
    # along a non-last dimension too
    y = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: SPARSE[name](t, dim=0), (y,))


def test_gradcheck_learned_alpha_per_row(backend):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 8, generator=g, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([1.2, 1.5, 1.9], dtype=torch.float64).view(1, 3, 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: entmax_bisect(a, b, n_iter=100), (x, alpha))


def test_grad_matches_entmax_package_and_ignores_masked(backend):
    x = dict(cases())["masked"][:5].clone().requires_grad_()
    g = torch.randn(5, 37, dtype=torch.float64)
    for ours, theirs in ((sparsemax, ref.sparsemax), (entmax15, ref.entmax15)):
        (gx,) = torch.autograd.grad((ours(x) * g).sum(), x)
        (gr,) = torch.autograd.grad((theirs(x, dim=-1) * g).sum(), x)
        assert torch.allclose(gx, gr, atol=1e-8)
        assert (gx[:, 20:] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(SPARSE) + ["softmax"])
def test_half_precision_inputs(name, dtype, backend):
    fn = softmax if name == "softmax" else SPARSE[name]
    x = (torch.randn(64, 128) * 4).to(dtype)
    x[:, 100:] = NEG_INF
    p = fn(x)
    assert p.dtype == dtype
    assert (p[:, 100:] == 0).all()
    # The threshold is found in float32; what remains is the rounding of each returned entry:
    # fp16 rows stay within 1e-3 of 1, bf16 (8-bit mantissa, ulp 2^-9 at 0.5) within 4e-3,
    # the same bound torch.softmax itself has in bf16.
    tol = 1e-3 if dtype == torch.float16 else 4e-3
    assert (p.double().sum(-1) - 1).abs().max() <= tol
    assert torch.allclose(p.float(), fn(x.float()), atol=1e-5, rtol=2**-7)  # fp16 subnormal tails


def test_sparse_outputs_are_actually_sparse():
    torch.manual_seed(5)
    x = torch.randn(100, 128) * 3
    assert ((sparsemax(x) > 0).float().sum(-1) < 128).all()
    assert ((entmax15(x) > 0).float().sum(-1) < 128).all()


def test_invalid_parameters_raise_with_value():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="1.5"):
        sparsegen_lin(x, 1.5)
    with pytest.raises(ValueError, match="lam must be < 1"):
        get_normalizer("sparsegen_lin", lam=1.0)
    with pytest.raises(ValueError, match="0.9"):
        entmax_bisect(x, 0.9)
    with pytest.raises(ValueError, match="2.5"):
        entmax_bisect(x, torch.tensor([[2.5]]).expand(3, 1))
    with pytest.raises(ValueError, match="size 1 along dim"):
        entmax_bisect(x, torch.full((3, 4), 1.5))
    with pytest.raises(ValueError, match="int64"):
        sparsemax(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="floating tensor"):
        entmax_bisect(x, torch.tensor([[2]]))
    with pytest.raises(ValueError, match="'sortmax'"):
        get_normalizer("sortmax")
    with pytest.raises(ValueError, match="lam"):
        get_normalizer("sparsemax", lam=0.1)


def test_get_normalizer_binds_parameters():
    torch.manual_seed(6)
    x = torch.randn(5, 11)
    assert torch.equal(get_normalizer("sparsegen_lin", lam=-2)(x), sparsegen_lin(x, -2))
    assert torch.equal(get_normalizer("entmax_bisect", alpha=1.7)(x), entmax_bisect(x, 1.7))
    assert torch.equal(get_normalizer("softmax")(x), torch.softmax(x, -1))


def test_softmax_backward_works():
    x = torch.randn(3, 4, requires_grad=True)
    softmax(x).pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def _output_and_grads(fn, inputs, dtype, eager):
    """fn's output and input gradients (fixed upstream gradient), inputs cast to dtype."""
    with eager_backend() if eager else contextlib.nullcontext():
        leaves = [t.detach().to(dtype).requires_grad_() for t in inputs]
        out = fn(*leaves)
        g = torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)
        return [out.detach()] + [t.detach() for t in torch.autograd.grad(out, leaves, g)]


@pytest.mark.skipif(not BUILT, reason="fused C++ normalisers not built (pip install --no-build-isolation -e .)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(SPARSE) + ["learned_alpha"])
def test_fused_matches_eager(name, dtype):
    """Fused kernels (dtype) against the eager path in float64: output, d/dx and d/dalpha.

    BERT-like scores N(0, s^2), s in {0.3, 1, 4} per head, masked keys and a fully masked row,
    normalised along dim 2 of 4. float32 tolerances: the output to 2e-6; d/dalpha divides
    differences of sums by (alpha - 1)^2 (100 at alpha 1.1), so 2e-4 relative to its size.
    """
    g = torch.Generator().manual_seed(7)
    scale = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64).view(1, 3, 1, 1)
    x = torch.randn(2, 3, 40, 33, generator=g, dtype=torch.float64) * scale
    x[:, :, 30:, :] = NEG_INF
    x[0, 1, :, 5] = NEG_INF
    if name == "learned_alpha":
        fn = lambda t, a: entmax_bisect(t, a, dim=2)
        inputs = (x, torch.tensor([1.1, 1.5, 1.9], dtype=torch.float64).view(1, 3, 1, 1))
    else:
        fn = lambda t: SPARSE[name](t, dim=2)
        inputs = (x,)
    fused = _output_and_grads(fn, inputs, dtype, eager=False)
    reference = _output_and_grads(fn, inputs, torch.float64, eager=True)
    p = fused[0]
    assert (p[:, :, 30:] == 0).all() and (p[0, 1, :, 5] == 0).all()
    tols = [1e-12, 1e-10, 1e-10] if dtype == torch.float64 else [2e-6, 2e-5, 2e-4]
    for ours, ref_, tol in zip(fused, reference, tols):
        assert torch.isfinite(ours).all()
        err = (ours.double() - ref_).abs().max().item()
        assert err <= tol * max(1.0, ref_.abs().max().item()), err


@pytest.mark.skipif(not BUILT, reason="fused C++ normalisers not built (pip install --no-build-isolation -e .)")
def test_cpu_tensors_take_the_fused_kernels():
    x = torch.randn(4, 16, requires_grad=True)
    assert _backend.backend() == "fused"
    assert type(sparsemax(x).grad_fn).__name__ == "FusedThresholdFunctionBackward"
    assert type(entmax15(x).grad_fn).__name__ == "FusedThresholdFunctionBackward"
    assert type(entmax_bisect(x, 1.3).grad_fn).__name__ == "FusedEntmaxAlphaFunctionBackward"
    with eager_backend():
        assert _backend.backend() == "eager"
        assert type(sparsemax(x).grad_fn).__name__ == "ThresholdFunctionBackward"


def test_missing_extension_falls_back_to_eager_and_logs_once(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "fairseq_sparse._C", None)  # import of it now fails
    _backend._fused_ops.cache_clear()
    try:
        x = torch.randn(5, 9, dtype=torch.float64)
        with caplog.at_level(logging.WARNING, logger=_backend.__name__):
            assert _backend.backend() == "eager"
            p = sparsemax(x)
            entmax15(x)
        assert sum("eager PyTorch" in r.getMessage() for r in caplog.records) == 1
        assert torch.allclose(p, ref.sparsemax(x, dim=-1), atol=1e-12)
    finally:
        monkeypatch.undo()
        _backend._fused_ops.cache_clear()


def test_first_model_build_warns_when_the_kernels_are_missing(monkeypatch, caplog):
    """An install without the C++ extension (e.g. pip 23.2's editable wheel) is loud at the first model build,
    naming the command that builds it, not silent until someone reads the speed."""
    pytest.importorskip("fairseq")
    from fairseq_sparse.modules.sparse_multihead_attention import SparseMultiheadAttention

    monkeypatch.setitem(sys.modules, "fairseq_sparse._C", None)
    _backend._fused_ops.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=_backend.__name__):
            SparseMultiheadAttention(16, 2, normalizer="sparsemax", self_attention=True)
            SparseMultiheadAttention(16, 2, normalizer="entmax15", self_attention=True)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "pip install --no-build-isolation -e ." in warnings[0].getMessage()
    finally:
        monkeypatch.undo()
        _backend._fused_ops.cache_clear()


def test_one_registry_names_every_normaliser_and_kernel_mode():
    """normalizers/registry.py is the one table: functions, parameters, kernel modes, the default n_iter."""
    from fairseq_sparse.normalizers import NORMALIZERS, normalizer_params, registry

    assert set(NORMALIZERS) == set(registry.SPECS)
    assert all(fn.__name__ == name for name, fn in NORMALIZERS.items())
    # a mode fixes the entmax-family alpha its kernels assume (sparsemax 2, entmax-1.5 1.5, alpha-entmax given)
    by_alpha = {2.0: registry.SPARSEMAX_MODE, 1.5: registry.ENTMAX15_MODE, None: registry.ENTMAX_ALPHA_MODE}
    for spec in registry.SPECS.values():
        assert spec.mode is None or spec.mode == by_alpha[spec.alpha], spec
        assert set(normalizer_params(spec.name, lam=-1.0, alpha=1.3, n_iter=7)) == spec.params
    assert registry.resolve_n_iter(None) == registry.DEFAULT_N_ITER
    with pytest.raises(ValueError, match="n_iter must be a positive integer, got 0"):
        entmax_bisect(torch.zeros(2, 3), 1.5, n_iter=0)
    with pytest.raises(ValueError, match="'softmax' is not one of"):
        registry.kernel_mode("softmax", "kernels.normalize")
