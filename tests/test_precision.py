"""Mixed precision on the CPU: every normaliser and a sparse_roberta_tiny training step in bf16
and fp16 (half parameters and autocast), and the learned entmax alpha under half parameters.

fairseq's --fp16/--bf16 need CUDA/a TPU, so "half parameters" is what they do to the model:
model.half() / model.bfloat16().

The documented tolerance (README, "Mixed precision"): thresholds are found in float32 and the
probabilities rounded once to the input dtype, so each row sums to 1 within the dtype's
machine epsilon (each entry moves by at most eps/2 of itself).
"""

import pytest
import torch
from fairseq import options, tasks

import fairseq_sparse  # noqa: F401  (registers the plugin)
from fairseq_sparse.modules.sparse_multihead_attention import SparseMultiheadAttention
from fairseq_sparse.normalizers import get_normalizer

HALF = [torch.bfloat16, torch.float16]
CASES = [
    ("softmax", {}),
    ("sparsemax", {}),
    ("sparsegen_lin", {"lam": -2.0}),
    ("entmax15", {}),
    ("entmax_bisect", {"alpha": 1.3}),
    ("entmax_bisect", {"alpha": 1.8}),
]


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}{kw.get('alpha', '')}" for n, kw in CASES])
def test_normaliser_half_forward_backward_on_the_simplex(name, kw, dtype):
    torch.manual_seed(0)
    x = (torch.randn(6, 3, 40) * 4).to(dtype)
    x[0, 0, 10:] = float("-inf")  # padding
    x.requires_grad_()
    p = get_normalizer(name, **kw)(x, dim=-1)
    assert p.dtype == dtype and torch.isfinite(p).all() and (p >= 0).all()
    eps = torch.finfo(dtype).eps
    assert (p.float().sum(-1) - 1).abs().max() <= eps
    assert (p[0, 0, 10:] == 0).all()
    # the float32 answer, rounded: no error beyond that one rounding
    ref = get_normalizer(name, **kw)(x.detach().float(), dim=-1)
    assert ((p.float() - ref).abs() <= ref * eps / 2 + 1e-6).all()
    (p * torch.linspace(-1, 1, 40, dtype=dtype)).sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_learned_alpha_under_half_parameters_stays_above_one(dtype):
    torch.manual_seed(0)
    attn = SparseMultiheadAttention(16, 4, self_attention=True, normalizer="entmax_bisect", learn_entmax_alpha=True)
    with torch.no_grad():  # sigmoid(-8) = 3e-4 and sigmoid(-40) ~ 4e-18: 1 + either is 1.0 in half (and float32)
        attn.entmax_alpha_logit.copy_(torch.tensor([-8.0, -40.0, 0.0, 8.0]))
    attn = attn.to(dtype).train()
    alpha = attn.entmax_alpha_per_head()
    assert alpha.dtype == torch.float32 and (alpha > 1).all() and (alpha < 2).all()
    assert alpha[0] > alpha[1] and alpha[2].item() == pytest.approx(1.5, abs=1e-3)
    x = torch.randn(5, 2, 16).to(dtype)
    out, _ = attn(x, x, x, need_weights=False)
    out.float().pow(2).sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(attn.entmax_alpha_logit.grad).all()


def build_tiny(mlm_data, extra):
    argv = [
        str(mlm_data),
        "--task",
        "masked_lm",
        "--arch",
        "sparse_roberta_tiny",
        "--tokens-per-sample",
        "32",
        "--dropout",
        "0",
        "--attention-dropout",
        "0",
    ] + extra
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    task = tasks.setup_task(args)
    return task.build_model(args), task.source_dictionary


def mlm_step(model, d, autocast_dtype=None):
    """One masked-LM forward + backward on a padded batch; returns (loss, attention maps)."""
    torch.manual_seed(0)
    tokens = torch.randint(d.nspecial, len(d) - 1, (4, 24))
    tokens[:, 0] = d.bos()
    tokens[1, 15:] = d.pad()
    targets = torch.full_like(tokens, d.pad())
    masked = torch.rand(tokens.shape) < 0.2
    masked[:, 0] = False
    masked &= tokens.ne(d.pad())
    targets[masked] = tokens[masked]
    tokens = tokens.masked_fill(masked, d.index("<mask>"))
    ctx = torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype else torch.autocast("cpu", enabled=False)
    with ctx:
        logits = model(tokens, masked_tokens=masked)[0]
        loss = torch.nn.functional.cross_entropy(logits.float(), targets[masked])
        maps = model.extract_attention(tokens)
    loss.backward()
    return loss, maps, tokens.eq(d.pad())


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mode", ["half_parameters", "autocast"])
@pytest.mark.parametrize("normalizer", ["softmax", "sparsegen_lin", "entmax15", "entmax_bisect"])
def test_tiny_training_step_in_half_precision(mlm_data, normalizer, mode, dtype):
    extra = ["--attn-normalizer", normalizer]
    if normalizer == "sparsegen_lin":
        extra += ["--sparsegen-lambda", "-2"]
    if normalizer == "entmax_bisect":
        extra += ["--learn-entmax-alpha"]
    torch.manual_seed(0)
    model, d = build_tiny(mlm_data, extra)
    if mode == "half_parameters":
        model = model.to(dtype)
    loss, maps, pad = mlm_step(model, d, autocast_dtype=dtype if mode == "autocast" else None)
    assert torch.isfinite(loss) and 2 < loss.item() < 2 * torch.log(torch.tensor(float(len(d)))).item()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 10 and all(torch.isfinite(g).all() for g in grads)
    eps = torch.finfo(dtype).eps
    for p in maps:
        assert torch.isfinite(p).all() and (p >= 0).all()
        assert (p.float().sum(-1) - 1).abs().max() <= eps
        assert (p[pad[:, None, None, :].expand_as(p)] == 0).all()


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_schedule_alpha_stays_float32_under_half_parameters(dtype):
    """--fp16/--bf16 cast the model; the sparsity schedule's alpha stays float32 (bf16 would make 1.05 1.047)."""
    attn = SparseMultiheadAttention(16, 4, self_attention=True, normalizer="entmax_bisect", entmax_alpha_start=1.05)
    attn = attn.to(dtype)
    assert attn.entmax_alpha_scheduled.dtype == torch.float32
    assert attn.entmax_alpha_per_head()[0].item() == torch.tensor(1.05).item()
    attn.set_scheduled_alpha(1.0501)
    assert attn.entmax_alpha_per_head()[0].item() == torch.tensor(1.0501).item()
    assert attn.state_dict()["entmax_alpha_scheduled"].dtype == torch.float32


def test_encoder_schedule_update_never_reads_the_device(mlm_data):
    """set_num_updates runs every update: on a GPU, reading alpha back (float(tensor)) would wait for the device.
    On `meta` tensors any such read raises."""
    model, _ = build_tiny(
        mlm_data,
        [
            "--attn-normalizer",
            "entmax_bisect",
            "--sparsity-schedule-updates",
            "10",
            "--sparsity-schedule-start-alpha",
            "1.05",
        ],
    )
    attn = next(m for m in model.modules() if isinstance(m, SparseMultiheadAttention))
    model.set_num_updates(5)
    assert attn.entmax_alpha_per_head()[0].item() == pytest.approx(1.05 + 0.45 * 0.5)
    model.to("meta").set_num_updates(6)
    assert attn.entmax_alpha_scheduled.device.type == "meta"
