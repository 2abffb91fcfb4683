"""GPU kernels (fairseq_sparse.kernels) against the eager reference, on the CPU.

The Triton kernels run under the Triton interpreter (TRITON_INTERPRET=1, kernels.interpret_on_cpu) on small
shapes; FlexAttention's block-sparse softmax runs its CPU forward (inference only). The reference
is fairseq_sparse.normalizers on dense masked scores.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("triton") is None:
    pytest.skip("the Triton kernels need the `triton` package (pip install triton)", allow_module_level=True)

# The interpreter must be chosen before triton is first imported (its own jit'd library functions
# are decorated then). If something imported triton earlier in this process (torch._dynamo does),
# test_in_fresh_process runs this file again in a new process instead.
FRESH = "triton" not in sys.modules
if FRESH:
    _previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    import triton  # noqa: E402,F401

    from fairseq_sparse.kernels._runtime import kernels as _decorate

    _decorate()
    if _previous is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _previous

from fairseq_sparse import kernels  # noqa: E402
from fairseq_sparse.normalizers import entmax_bisect, get_normalizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASES = [("sparsemax", {}), ("sparsegen_lin", {"lam": -2.0}), ("entmax15", {}), ("entmax_bisect", {"alpha": 1.3})]
IDS = [c[0] for c in CASES]
INTERPRETED = type(kernels._runtime.kernels().row_normalize_fwd).__name__ == "InterpretedFunction"


@pytest.fixture(autouse=True)
def interpreter(request, monkeypatch):
    if request.node.name == "test_in_fresh_process":
        yield
        return
    if not INTERPRETED:
        pytest.skip(
            "triton was imported before this file without TRITON_INTERPRET=1; "
            "test_in_fresh_process runs these tests in a new process"
        )
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # triton reads it again while launching
    previous = kernels.interpret_on_cpu(True)
    yield
    kernels.interpret_on_cpu(previous)


def test_in_fresh_process():
    if INTERPRETED:
        pytest.skip("the tests of this file ran in this process")
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", __file__],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-5000:]


def dense_attention(q, k, v, name, kw, pad=None, keep=None, drop=None, alpha=None):
    """The eager reference: masked scores -> normaliser -> (dropout) -> values, in float32."""
    s = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    if keep is not None:
        s = s.masked_fill(~keep, float("-inf"))
    if pad is not None:
        s = s.masked_fill(pad[:, None, None, :], float("-inf"))
    p = entmax_bisect(s, alpha.view(1, -1, 1, 1)) if alpha is not None else get_normalizer(name, **kw)(s)
    if drop is not None:
        p = p * drop
    return p @ v.float()


def qkv(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(shape, generator=g) * 2).to(dtype).requires_grad_() for _ in range(3)]


def masks(B, H, N, seed=1):
    g = torch.Generator().manual_seed(seed)
    pad = torch.zeros(B, N, dtype=torch.bool)
    pad[-1, N - 9 :] = True
    keep = torch.rand(H, N, N, generator=g) > 0.6
    keep[:, :, 16:32] = False  # a whole key block column the kernel must skip
    keep[0, 5] = False  # a row with no allowed key: zeros out, zero gradients
    return pad, keep


def grads_of(out, g, leaves):
    for t in leaves:
        t.grad = None
    out.backward(g)
    return [t.grad.clone() for t in leaves]


# ----- row normaliser kernel ----------------------------------------------------------------


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_row_kernel_matches_eager(name, kw):
    x = torch.randn(6, 37, generator=torch.Generator().manual_seed(0)) * 3
    x[1, :30] = float("-inf")
    x[2] = float("-inf")  # a fully masked row
    g = torch.randn(6, 37)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    p = kernels.normalize(a, name, **kw)
    r = get_normalizer(name, **kw)(b)
    p.backward(g)
    r.backward(g)
    torch.testing.assert_close(p, r, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5)
    assert torch.equal(p > 0, r > 0)  # same supports
    assert torch.equal(p[2], torch.zeros(37)) and torch.equal(a.grad[2], torch.zeros(37))


def test_row_kernel_learned_alpha_gradient():
    x = torch.randn(2, 3, 29, generator=torch.Generator().manual_seed(2)) * 3
    g = torch.randn_like(x)
    alpha = torch.tensor([1.1, 1.6, 2.0]).view(1, 3, 1)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    al, bl = alpha.clone().requires_grad_(), alpha.clone().requires_grad_()
    kernels.normalize(a, "entmax_bisect", alpha=al).backward(g)
    entmax_bisect(b, bl).backward(g)
    torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(al.grad, bl.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_row_kernel_half_inputs(dtype):
    x = (torch.randn(4, 50, generator=torch.Generator().manual_seed(3)) * 3).to(dtype)
    for name, kw in CASES:
        p = kernels.normalize(x, name, **kw)
        assert p.dtype == dtype
        torch.testing.assert_close(p, get_normalizer(name, **kw)(x), atol=2e-3, rtol=1e-2)


# ----- fused attention -------------------------------------------------------------------


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_fused_attention_matches_dense_masked(name, kw):
    B, H, N, D = 2, 3, 40, 16
    q, k, v = qkv((B, H, N, D))
    pad, keep = masks(B, H, N)
    g = torch.randn(B, H, N, D)
    out = kernels.sparse_attention(q, k, v, name, key_padding_mask=pad, keep=keep, **kw)
    got = grads_of(out, g, (q, k, v))
    ref = dense_attention(q, k, v, name, kw, pad, keep)
    want = grads_of(ref, g, (q, k, v))
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=5e-5, rtol=1e-4)
    assert torch.equal(out[:, 0, 5], torch.zeros(B, D))  # the row with no allowed key


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name,kw", [CASES[0], CASES[3]], ids=[IDS[0], IDS[3]])
def test_fused_attention_half_inputs(dtype, name, kw):
    """With half inputs the kernel is no further from the float32 reference than the eager half path."""
    B, H, N, D = 1, 2, 33, 16
    q, k, v = qkv((B, H, N, D), dtype, seed=4)
    g = torch.randn(B, H, N, D).to(dtype)
    out = kernels.sparse_attention(q, k, v, name, **kw)
    assert out.dtype == dtype
    got = grads_of(out, g, (q, k, v))
    exact = dense_attention(q, k, v, name, kw)
    want = grads_of(exact, g.float(), (q, k, v))
    s = (q @ k.transpose(-1, -2)) * D**-0.5  # the eager path in half precision
    eager = get_normalizer(name, **kw)(s) @ v
    eager_grads = grads_of(eager, g, (q, k, v))
    tol = 4 * (eager.float() - exact).abs().max() + 1e-2
    assert (out.float() - exact).abs().max() <= tol
    for a, b, e in zip(got, want, eager_grads):
        assert (a.float() - b).abs().max() <= 4 * (e.float() - b).abs().max() + 2e-2


def test_fused_learned_alpha_and_dropout():
    B, H, N, D = 2, 3, 24, 16
    q, k, v = qkv((B, H, N, D), seed=5)
    alpha = torch.tensor([1.2, 1.5, 1.8], requires_grad=True)
    g = torch.randn(B, H, N, D)
    torch.manual_seed(7)
    seed = int(torch.randint(0, 2**30, (1,)).item())  # the draw sparse_attention makes
    torch.manual_seed(7)
    out = kernels.sparse_attention(q, k, v, "entmax_bisect", alpha=alpha, dropout_p=0.3)
    got = grads_of(out, g, (q, k, v, alpha))
    drop = kernels.dropout_factors(B, H, N, seed, 0.3, "cpu")
    assert 0.2 < float((drop == 0).float().mean()) < 0.4
    ref = dense_attention(q, k, v, "entmax_bisect", {}, drop=drop, alpha=alpha)
    want = grads_of(ref, g, (q, k, v, alpha))
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "entmax_bisect"])
def test_threshold_search_ends_in_few_passes(name):
    """Large scores (std ~9): float32 rounding must not keep a block searching to the cap (N + 2)."""
    B, H, N, D = 1, 2, 48, 16
    q, k, v = (t.detach() * 3 for t in qkv((B, H, N, D), seed=12))
    out, stats = kernels.sparse_attention(q, k, v, name, return_stats=True)
    ref = dense_attention(q, k, v, name, {})
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert int(stats["passes"].max()) <= 12, stats["passes"]
    torch.testing.assert_close(
        stats["support"], (get_normalizer(name)((q @ k.transpose(-1, -2)) * D**-0.5) > 0).sum(-1).float()
    )


def test_skipped_blocks_are_not_read():
    """Key blocks the mask never touches are skipped: NaN values there do not reach the output."""
    B, H, N, D = 1, 2, 48, 16
    q, k, v = qkv((B, H, N, D), seed=6)
    keep = torch.rand(1, N, N, generator=torch.Generator().manual_seed(8)) > 0.5
    keep[..., 32:] = False  # the last key block: no query attends to it
    poisoned = v.detach().clone()
    poisoned[..., 32:, :] = float("nan")
    poisoned.requires_grad_()
    g = torch.randn(B, H, N, D)
    out = kernels.sparse_attention(q, k, poisoned, "entmax15", keep=keep)
    got = grads_of(out, g, (q, k, poisoned))
    ref = dense_attention(q, k, v, "entmax15", {}, keep=keep)
    want = grads_of(ref, g, (q, k, v))
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=5e-5, rtol=1e-4)


def test_block_tables():
    keep = torch.rand(2, 40, 40, generator=torch.Generator().manual_seed(9)) > 0.97
    keep[1, :16] = False
    kv_num, kv_idx, q_num, q_idx = kernels.block_tables(keep, 16, 16)
    for h in range(2):
        for qb in range(3):
            touched = [kb for kb in range(3) if keep[h, qb * 16 : qb * 16 + 16, kb * 16 : kb * 16 + 16].any()]
            assert kv_idx[h, qb, : kv_num[h, qb]].tolist() == touched
            for kb in range(3):
                assert (qb in q_idx[h, kb, : q_num[h, kb]].tolist()) == (kb in touched)
    assert kv_num[1, 0] == 0


def test_bad_input_is_named():
    q, k, v = qkv((1, 2, 8, 16))
    with pytest.raises(ValueError, match="'softmaxx'"):
        kernels.sparse_attention(q, k, v, "softmaxx")
    with pytest.raises(ValueError, match=r"keep must be .*\(2, 8, 9\)"):
        kernels.sparse_attention(q, k, v, "sparsemax", keep=torch.ones(2, 8, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="alpha must be in"):
        kernels.sparse_attention(q, k, v, "entmax_bisect", alpha=2.5)
    with pytest.raises(ValueError, match="float64"):
        kernels.normalize(torch.zeros(2, 3, dtype=torch.float64), "sparsemax")


# ----- block-sparse softmax (FlexAttention) ----------------------------------------------


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_block_sparse_matches_dense_masked_sdpa():
    B, H, N, D = 2, 3, 300, 16  # 3 blocks of 128, the last one partial
    q, k, v = (t.detach() for t in qkv((B, H, N, D), seed=10))
    keep = torch.rand(H, N, N, generator=torch.Generator().manual_seed(11)) > 0.9
    keep[:, :, 128:256] = False  # an empty block column
    keep[2, 7] = False  # a row with no allowed key
    pad = torch.zeros(B, N, dtype=torch.bool)
    pad[0, 250:] = True
    with torch.no_grad():
        out = kernels.flex_softmax_attention(q, k, v, keep, pad)
        s = (q @ k.transpose(-1, -2)) * D**-0.5
        s = s.masked_fill(~keep, float("-inf")).masked_fill(pad[:, None, None, :], float("-inf"))
        ref = torch.nan_to_num(torch.softmax(s, dim=-1)) @ v
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(out[:, 2, 7], torch.zeros(B, D))


# ----- the model picks the kernels ------------------------------------------------------


def test_attention_module_uses_fused_kernel(monkeypatch):
    """On a device the kernels can run on (here: the CPU through the interpreter) the model picks them."""
    pytest.importorskip("fairseq")
    from fairseq_sparse.modules import sparse_multihead_attention as sma

    torch.manual_seed(0)
    layer = sma.SparseMultiheadAttention(32, 2, normalizer="entmax15", self_attention=True, dropout=0.0)
    keep = torch.rand(2, 20, 20) > 0.5
    layer.set_keep_mask_fn(lambda t, s: keep)
    x = torch.randn(20, 2, 32)
    pad = torch.zeros(2, 20, dtype=torch.bool)
    pad[1, 15:] = True
    calls = []
    real = sma.sparse_attention
    monkeypatch.setattr(sma, "sparse_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    fused, _ = layer(x, x, x, key_padding_mask=pad, need_weights=False)
    assert calls, "the module did not take the fused kernel"
    kernels.interpret_on_cpu(False)  # now the eager path
    eager, _ = layer(x, x, x, key_padding_mask=pad, need_weights=False)
    assert len(calls) == 1
    torch.testing.assert_close(fused, eager, atol=2e-5, rtol=1e-4)


# ----- the GPU check's logic --------------------------------------------------------------


def test_gpu_check_dry_run():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    for line in (
        "N = 32",
        "| sdpa softmax",
        "| sparsemax fused |",
        "| entmax15 eager |",
        "| entmax_bisect row kernel |",
        "| flex block-sparse",
        "| sparsemax fused masked",
        "autocast bfloat16",
        "| sparse_roberta sparsemax |",
        "| sparse_roberta sparsemax DAM search |",
        "DAM search step / dense step, sparsemax",
        "dry run",
    ):
        assert line in res.stdout, (line, res.stdout)
    assert "failed" not in res.stdout and "! " not in res.stdout, res.stdout


def test_kernels_compile_for_a_gpu(tmp_path):
    """The Triton compiler (not only the interpreter) accepts the kernels, for sm_90, without a GPU."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compile_kernels.py"), "--quick", "--arch", "90"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "compiled 3 kernel variants" in res.stdout
