"""What a GPU would run, checked without one (issue 20): the DAM search's float-mask path through the Triton
row kernel (values and gradients, the mask's included) and its freedom from host syncs, the GPU tile sizes with
the native half-precision dot, 64-bit offsets and the folded launch grid, and the per-mask caches.

The Triton kernels run under the interpreter, set up by tests/test_kernels.py (imported first); the sync check
runs the CUDA code path on `meta` tensors, where any read of device data raises.
"""

# isort: skip_file
# (test_kernels must be imported first: it makes triton decorate its kernels for the interpreter)
import math
import os

import pytest
import torch
from torch.overrides import TorchFunctionMode

from test_kernels import CASES, IDS, INTERPRETED, ROOT, dense_attention, grads_of, interpreter, qkv  # noqa: F401
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from fairseq_sparse import kernels  # noqa: E402
from fairseq_sparse.kernels import _runtime, attention, blocks  # noqa: E402
from fairseq_sparse.kernels._triton_kernels.row_normalize import _row_offsets  # noqa: E402
from fairseq_sparse.kernels._triton_kernels.tiles import _keep_offsets, _program  # noqa: E402

# probe kernels of the helpers, decorated for the interpreter as test_kernels decorated the package's kernels
_previous = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"


@triton.jit
def _offsets_probe(OUT, hk, N, first_row, BLOCK: tl.constexpr):
    offs = first_row + tl.arange(0, BLOCK)
    o = _keep_offsets(tl.full((), hk, tl.int32), offs, offs, N)
    tl.store(OUT + tl.arange(0, BLOCK)[:, None] * BLOCK + tl.arange(0, BLOCK)[None, :], o)


@triton.jit
def _program_probe(OUT, N, BLOCK: tl.constexpr):
    blk, bh, _ = _program(N, BLOCK)
    tl.store(OUT + tl.program_id(0) * 2, blk)
    tl.store(OUT + tl.program_id(0) * 2 + 1, bh)


@triton.jit
def _row_offsets_probe(OUT, n_cols):
    row, offs = _row_offsets(n_cols, 2)
    tl.store(OUT + row, tl.max(offs, 0))


if _previous is None:
    del os.environ["TRITON_INTERPRET"]
else:
    os.environ["TRITON_INTERPRET"] = _previous


NAMES = ["softmax", "sparsemax", "sparsegen_lin", "entmax15", "entmax_bisect"]


def test_in_fresh_process():
    if INTERPRETED:
        pytest.skip("the tests of this file ran in this process")
    import subprocess
    import sys

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


def attention_layer(name, heads=3, dim=24, dropout=0.0):
    from fairseq_sparse.modules.sparse_multihead_attention import SparseMultiheadAttention

    kw = {"sparsegen_lambda": -2.0} if name == "sparsegen_lin" else {}
    if name == "entmax_bisect":
        kw = {"entmax_alpha": 1.4, "learn_entmax_alpha": True}
    return SparseMultiheadAttention(dim, heads, normalizer=name, self_attention=True, dropout=dropout, **kw)


def dam_sample(heads, n, seed=0):
    """A straight-through 0/1 float mask (as masks/dam.py draws it) and the logits it depends on."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(heads, n, n, generator=g) * 2).requires_grad_()
    soft = torch.sigmoid(logits)
    mask = (soft > 0.5).float() + soft - soft.detach()
    return mask, logits


# ----- 1. the DAM search: the row kernel with the float mask, against the eager path --------------------------


@pytest.mark.parametrize("name", NAMES)
def test_dam_float_mask_row_kernel_matches_eager(name, monkeypatch):
    """The module's float-mask path with the Triton row kernel = masked_normalize on the eager path:
    probabilities, score gradients, the mask's gradient (dropped keys too) and the learned alpha's."""
    pytest.importorskip("fairseq")
    from fairseq_sparse.masks.masked_normalize import masked_normalize
    from fairseq_sparse.modules import sparse_multihead_attention as sma

    torch.manual_seed(0)
    layer = attention_layer(name, heads=2, dim=16)
    B, H, N = 2, 2, 29
    scores = (torch.randn(B, H, N, N) * 2).requires_grad_()
    pad = torch.zeros(B, N, dtype=torch.bool)
    pad[1, 22:] = True
    _, logits = dam_sample(H, N)
    with torch.no_grad():
        logits[0, 4] = -5.0  # a row whose every key is dropped
    g = torch.randn(B, H, N, N)
    calls = []
    monkeypatch.setattr(sma, "kernel_normalize", lambda *a, **kw: calls.append(1) or kernels.normalize(*a, **kw))

    def run(fn):
        for t in (scores, logits):
            t.grad = None
        layer.zero_grad()
        masked = scores.masked_fill(pad[:, None, None, :], float("-inf"))
        soft = torch.sigmoid(logits)
        keep = (soft > 0.5).float() + soft - soft.detach()
        p = fn(masked, keep)
        p.backward(g)
        alpha_grad = None if layer.entmax_alpha_logit is None else layer.entmax_alpha_logit.grad.clone()
        return p.detach(), scores.grad.clone(), logits.grad.clone(), alpha_grad

    got = run(layer._normalise_with_mask)  # the interpreter stands in for CUDA: can_run(scores) is True
    assert bool(calls) == (name != "softmax"), "the float-mask path did not take the row kernel"
    kernels.interpret_on_cpu(False)
    alpha = layer.entmax_alpha
    if name == "entmax_bisect":
        alpha = layer.entmax_alpha_per_head().view(1, -1, 1, 1)
    want = run(lambda s, m: masked_normalize(s, m, name, lam=layer.sparsegen_lambda, alpha=alpha))
    for a, b in zip(got, want):
        if b is not None:
            torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    assert torch.equal(got[0][:, 0, 4], torch.zeros(B, N))  # no kept key: attends to nothing
    assert got[2][0, 4].abs().sum() > 0  # ... and its mask gradient can switch a key back on


class RecordSyncs(TorchFunctionMode):
    """Records the calls that make the host wait for the device, when they touch non-CPU tensors."""

    READS = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "equal", "cpu", "numpy", "nonzero"}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        on_device = any(isinstance(a, torch.Tensor) and a.device.type != "cpu" for a in args)
        reduces_all = name in ("any", "all") and len(args) == 1 and not kwargs  # no dim: a value for bool()
        if on_device and (name in self.READS or reduces_all):
            self.calls.append(name)
        return func(*args, **kwargs)


class _NoLaunch:
    """Stands in for the Triton kernels on `meta` tensors: the launch code runs, the launch does nothing."""

    def __getattr__(self, name):
        return self

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


@pytest.mark.parametrize("name", NAMES)
def test_cuda_dam_path_never_waits_for_the_device(name, monkeypatch):
    """A DAM training step's attention on the GPU path (here on `meta` tensors, where reading a value raises):
    forward and backward, with padding, dropout and the density counts, and no .item() / bool() / float() /
    torch.equal / .any()."""
    pytest.importorskip("fairseq")
    from fairseq_sparse.kernels import row_normalize
    from fairseq_sparse.modules import sparse_multihead_attention as sma

    monkeypatch.setattr(sma, "can_run", lambda t: True)  # the dispatch a CUDA tensor gets
    monkeypatch.setattr(row_normalize, "kernels", lambda: _NoLaunch())
    monkeypatch.setattr(row_normalize, "can_run", lambda t: True)
    from fairseq_sparse.masks import DifferentiableAttentionMask

    layer = attention_layer(name, dropout=0.1).to("meta").train()
    N, B, H = 20, 2, 3
    dam = DifferentiableAttentionMask(H, 32, structure="unstructured").to("meta").train()
    layer.set_keep_mask_fn(dam.layer_mask_fn(0))
    x = torch.randn(N, B, 24, device="meta", requires_grad=True)
    pad = torch.zeros(B, N, dtype=torch.bool, device="meta")
    recorder = RecordSyncs()
    with recorder:
        dam(N)  # the encoder draws the step's sample first
        out, _ = layer(x, x, x, key_padding_mask=pad, need_weights=False)
        (out.sum() + dam.l1_penalty(normalize=True)).backward()  # on meta, a read in the backward raises
    assert recorder.calls == [], recorder.calls
    assert dam.dam_logits.grad is not None and x.grad is not None


# ----- 3. the GPU's tile sizes and native half-precision dot, under the interpreter ----------------------------


@pytest.fixture
def gpu_tiles():
    previous = kernels.gpu_tiles_on_cpu(True)
    yield
    kernels.gpu_tiles_on_cpu(previous)


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_gpu_tiles_half_dot_match_eager(name, kw, gpu_tiles):
    """64 x 64 tiles, float16 q/k/v through the native half dot (no upcast), forward and backward, keep mask,
    padding; N spans two query and key blocks. Tolerance: the eager path in half precision, as on a GPU."""
    B, H, N, D = 1, 2, 80, 64
    dtype = torch.float16
    q, k, v = qkv((B, H, N, D), dtype, seed=21)
    keep = torch.rand(H, N, N, generator=torch.Generator().manual_seed(22)) > 0.5
    keep[:, :64, 64:] = False  # a skipped block
    pad = torch.zeros(B, N, dtype=torch.bool)
    pad[0, 75:] = True
    g = torch.randn(B, H, N, D).to(dtype)
    out, stats = kernels.sparse_attention(q, k, v, name, key_padding_mask=pad, keep=keep, return_stats=True, **kw)
    assert stats["passes"].shape[-1] == 2  # 64-row query blocks ran
    got = grads_of(out, g, (q, k, v))
    exact = dense_attention(q, k, v, name, kw, pad, keep)
    want = grads_of(exact, g.float(), (q, k, v))
    s = ((q @ k.transpose(-1, -2)) * D**-0.5).masked_fill(~keep, float("-inf"))
    eager = kernels_free_normalise(name, kw, s.masked_fill(pad[:, None, None, :], float("-inf"))) @ v
    eager_grads = grads_of(eager, g, (q, k, v))
    assert (out.float() - exact).abs().max() <= 4 * (eager.float() - exact).abs().max() + 1e-2
    for a, b, e in zip(got, want, eager_grads):
        assert (a.float() - b).abs().max() <= 4 * (e.float() - b).abs().max() + 2e-2


def kernels_free_normalise(name, kw, s):
    from fairseq_sparse.normalizers import get_normalizer

    return get_normalizer(name, **kw)(s)


@pytest.mark.slow
def test_gpu_tiles_float32_ieee_dot_and_wide_heads(gpu_tiles):
    """float32 inputs take the input_precision="ieee" dot; D = 80 takes the 32 x 32 tiles."""
    B, H, N, D = 1, 1, 70, 80
    q, k, v = qkv((B, H, N, D), seed=23)
    g = torch.randn(B, H, N, D)
    out = kernels.sparse_attention(q, k, v, "entmax_bisect", alpha=1.3)
    got = grads_of(out, g, (q, k, v))
    ref = dense_attention(q, k, v, "entmax_bisect", {"alpha": 1.3})
    want = grads_of(ref, g, (q, k, v))
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_autotune_keeps_a_keep_masks_tiles():
    """With a keep mask only the tiles its block tables were built with may run; without, every config."""
    import triton

    configs = [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in attention.TUNE_CONFIGS
    ]
    kept = attention._prune(configs, {"D": 64}, HAS_KEEP=True)
    assert kept and {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in kept} == {attention.fixed_tiles(64)}
    assert len(attention._prune(configs, {"D": 64}, HAS_KEEP=False)) == len(configs)
    wide = attention._prune(configs, {"D": 128}, HAS_KEEP=False)
    assert wide and all(max(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) <= 32 for c in wide)
    for name in ("attn_fwd", "attn_bwd_dq", "attn_bwd_dkdv"):  # the tuner's key names the kernels' arguments
        fn = getattr(kernels._runtime.kernels(), name)
        assert set(attention.TUNE_KEY) <= set(fn.arg_names), name


# ----- 2. no overflow, no launch limit ---------------------------------------------------------------------------


def test_keep_mask_offsets_are_64_bit():
    """12 heads at N = 14,000: the last head's offsets pass 2^31 (int32 would wrap)."""
    hk, n, first = 11, 14000, 13990
    out = torch.empty(4, 4, dtype=torch.int64)
    _offsets_probe[(1,)](out, hk, n, first, BLOCK=4)
    rows = torch.arange(first, first + 4, dtype=torch.int64)
    want = (hk * n + rows[:, None]) * n + rows[None, :]
    assert int(want.max()) > 2**31
    assert torch.equal(out, want)


def test_row_offsets_are_64_bit():
    """The row kernel at 1,030 rows of 2^21 columns: the last rows start past 2^31."""
    rows, n_cols = 1030, 2**21
    out = torch.zeros(rows, dtype=torch.int64)
    _row_offsets_probe[(rows,)](out, n_cols)
    want = torch.arange(rows, dtype=torch.int64) * n_cols + 1
    assert int(want.max()) > 2**31 and torch.equal(out, want)


def test_flat_grid_folds_batch_times_heads():
    """B x H past CUDA's 65,535 on one flat axis: every program's (block, bh) comes back, the grid fits."""
    n, block, heads = 40, 16, 5
    grid = _runtime.flat_grid(math.ceil(n / block), heads)
    out = torch.zeros(grid[0], 2, dtype=torch.int32)
    _program_probe[grid](out, n, BLOCK=block)
    assert out.tolist() == [[blk, bh] for bh in range(heads) for blk in range(3)]
    # the sizes themselves, without allocating: 16 x 12,000 (B x H = 192,000 > 65,535), N = 512
    (x,) = _runtime.flat_grid(math.ceil(512 / 64), 16 * 12000)
    assert 65535 < 16 * 12000 and x == 8 * 192000 <= _runtime.MAX_GRID_X
    with pytest.raises(ValueError, match="grid limit"):
        _runtime.flat_grid(2**16, 2**16)


# ----- 4. built once per mask --------------------------------------------------------------------------------


def test_block_tables_and_block_masks_are_built_once_per_mask(monkeypatch):
    builds = []
    real = blocks.block_tables
    monkeypatch.setattr(blocks, "block_tables", lambda *a: builds.append(a[1:]) or real(*a))
    B, H, N, D = 1, 1, 24, 16
    q, k, v = qkv((B, H, N, D), seed=24)
    keep = torch.rand(1, N, N, generator=torch.Generator().manual_seed(25)) > 0.5
    for _ in range(3):  # three layers sharing one frozen mask
        out = kernels.sparse_attention(q, k, v, "sparsemax", keep=keep)
    out.sum().backward()
    assert len(builds) == 1
    keep[0, 0, 0] = ~keep[0, 0, 0]  # changed in place: built again
    with torch.no_grad():
        kernels.sparse_attention(q, k, v, "sparsemax", keep=keep)
    assert len(builds) == 2
    if kernels.flex_available():
        first = kernels.flex_block_mask(keep)
        assert kernels.flex_block_mask(keep) is first and len(builds) == 3
        kernels.flex_block_mask(keep, torch.zeros(B, N, dtype=torch.bool))  # padding: the same tables
        assert len(builds) == 3


# ----- 6. the GPU check fails loudly -------------------------------------------------------------------------


def test_gpu_check_exits_nonzero_when_a_path_fails(monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)

    def broken(*args, **kwargs):
        raise RuntimeError("launch failed")

    monkeypatch.setattr(gpu_check.kernels, "sparse_attention", broken)
    monkeypatch.setattr(gpu_check, "NORMALIZERS", [("sparsemax", {})])
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--cpu-dry-run", "--part", "kernels"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 1
    assert "! kernels: sparsemax fused: RuntimeError: launch failed" in out and "GPU check FAILED" in out
