"""fairseq-sparse-env (environment.py), the apex safety net (apex_fallbacks.py) and the native
fused AdamW (optim/native_fused_adamw.py).

The broken-apex case is reproduced for real: a fake `apex` package that imports fine but lacks
its CUDA extensions (exactly what a Python-only apex install looks like) is put first on
sys.path of a fresh interpreter. There, with torch told a GPU is present, stock fairseq crashes
while building a LayerNorm -- importing fairseq_sparse changes nothing -- and building a
sparse_roberta model applies the fallbacks, logs the choice and builds torch.nn.LayerNorm.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fairseq_sparse import environment
from fairseq_sparse.cli import env
from fairseq_sparse.optim import native_fused_adamw

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAKE_APEX = {
    "apex/__init__.py": '__version__ = "0.1+python-only"\n',
    "apex/normalization/__init__.py": "from .fused_layer_norm import FusedLayerNorm\n",
    # Like apex: the CUDA extension is imported lazily, when the layer is constructed.
    "apex/normalization/fused_layer_norm.py": textwrap.dedent("""
        import importlib
        import torch

        class FusedLayerNorm(torch.nn.Module):
            def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True):
                super().__init__()
                global fused_layer_norm_cuda
                fused_layer_norm_cuda = importlib.import_module("fused_layer_norm_cuda")
    """),
    "apex/multi_tensor_apply/__init__.py": textwrap.dedent("""
        class MultiTensorApply:
            available = False
            def __init__(self, chunk_size):
                try:
                    import amp_C  # noqa: F401
                    MultiTensorApply.available = True
                except ImportError:
                    MultiTensorApply.available = False

        multi_tensor_applier = MultiTensorApply(2048 * 32)
    """),
    "apex/optimizers/__init__.py": textwrap.dedent("""
        import torch
        from apex.multi_tensor_apply import multi_tensor_applier

        class FusedAdam(torch.optim.Optimizer):
            def __init__(self, params, **kw):
                if not multi_tensor_applier.available:
                    raise RuntimeError("apex.optimizers.FusedAdam requires cuda extensions")

        class FusedLAMB(FusedAdam):
            pass
    """),
}

PROBE = textwrap.dedent("""
    import argparse, json, logging, torch
    torch.cuda.is_available = lambda: True   # what fairseq sees on a GPU machine
    import fairseq_sparse  # registers the plugin; patches nothing
    from fairseq.modules import LayerNorm
    try:
        LayerNorm(8)
        stock = "built"
    except Exception as e:
        stock = f"{type(e).__name__}: {e}"

    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger("fairseq_sparse.apex_fallbacks").addHandler(handler)
    logging.getLogger("fairseq_sparse.apex_fallbacks").setLevel(logging.INFO)
    from fairseq.data import Dictionary
    from fairseq_sparse.models.sparse_roberta import SparseRobertaModel
    from fairseq_sparse.environment import describe_environment
    args = argparse.Namespace(arch="sparse_roberta_tiny", encoder_layers=1, encoder_embed_dim=16,
                              encoder_ffn_embed_dim=32, encoder_attention_heads=2, max_positions=16)
    task = argparse.Namespace(source_dictionary=Dictionary(), max_positions=lambda: 16)
    model = SparseRobertaModel.build_model(args, task)
    layer = model.encoder.sentence_encoder.layers[0].self_attn_layer_norm
    y = layer(torch.randn(2, 16))

    from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig
    opt = FairseqAdam(FairseqAdamConfig(lr=[0.1], adam_betas="(0.9, 0.999)"), [torch.nn.Parameter(torch.ones(3))])

    report = describe_environment()
    print(json.dumps({"stock": stock, "layer": type(layer).__module__ + "." + type(layer).__name__, "logged": logged,
                      "finite": bool(torch.isfinite(y).all()), "optimizer": type(opt._optimizer).__name__,
                      "report": report}))
""")


@pytest.fixture(scope="module")
def broken_apex_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_apex")
    for rel, text in FAKE_APEX.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), REPO])},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_fake_apex_reproduces_the_stock_crash(broken_apex_run):
    # Without the fallbacks, stock fairseq dies building the model's first LayerNorm.
    assert broken_apex_run["stock"].startswith("ModuleNotFoundError")
    assert "fused_layer_norm_cuda" in broken_apex_run["stock"]


def test_broken_apex_falls_back_to_torch_kernels(broken_apex_run):
    assert broken_apex_run["layer"] == "torch.nn.modules.normalization.LayerNorm"
    # building the model said once, at INFO, what it chose and why
    assert len(broken_apex_run["logged"]) == 1, broken_apex_run["logged"]
    line = broken_apex_run["logged"][0]
    assert "LayerNorm = torch.nn.LayerNorm" in line and "Adam = torch AdamW(fused=True)" in line
    assert "FusedLayerNorm" in line and "fused_layer_norm_cuda" in line
    assert broken_apex_run["finite"]
    # FairseqAdam on CPU parameters: fairseq's own Adam, not apex's (and no crash).
    assert broken_apex_run["optimizer"] == "Adam"
    report = broken_apex_run["report"]
    apex = report["apex"]
    assert apex["installed"] and apex["version"] == "0.1+python-only"
    kernels = apex["kernels"]
    assert not kernels["FusedLayerNorm"]["available"]
    assert (
        "broken" in kernels["FusedLayerNorm"]["reason"]
        and "fused_layer_norm_cuda" in kernels["FusedLayerNorm"]["reason"]
    )
    assert not kernels["FusedAdam"]["available"] and "amp_C" in kernels["FusedAdam"]["reason"]
    assert not kernels["FusedLAMB"]["available"]
    uses = report["fairseq_uses"]
    assert uses["layer_norm"] == "torch.nn.modules.normalization.LayerNorm"
    assert uses["lamb"].startswith("unavailable")


def test_describe_environment_on_this_machine():
    report = environment.describe_environment()
    assert report["torch"] == torch.__version__
    assert report["cuda"]["available"] == torch.cuda.is_available()
    assert set(report["apex"]["kernels"]) == {"FusedLayerNorm", "FusedAdam", "FusedLAMB"}
    assert set(report["sdpa_backends"]) >= {"flash", "mem_efficient", "math", "cudnn"}
    for key in ("fp16 (--fp16)", "bf16 (--bf16)", "native amp (--amp)"):
        assert isinstance(report["precision"][key], bool)
    if not torch.cuda.is_available():
        assert report["fairseq_uses"]["layer_norm"] == "torch.nn.modules.normalization.LayerNorm"
        assert report["fairseq_uses"]["adam"].startswith("fairseq.optim.adam.Adam")
        assert not report["precision"]["fp16 (--fp16)"]


def test_env_cli_json_and_text(capsys):
    env.main(["--json"])
    report = json.loads(capsys.readouterr().out)
    assert "fairseq_uses" in report and "apex" in report
    env.main([])
    text = capsys.readouterr().out
    assert "fairseq_uses:" in text and "layer_norm:" in text and "FusedLayerNorm:" in text


def test_native_fused_adam_keeps_fairseq_adam_where_fused_cannot_run():
    from fairseq.optim.adam import Adam

    cpu = [torch.nn.Parameter(torch.ones(3))]
    assert isinstance(native_fused_adamw.native_fused_adam(cpu, lr=0.1), Adam)
    half = [torch.nn.Parameter(torch.ones(3, dtype=torch.float16))]
    assert isinstance(native_fused_adamw.native_fused_adam(half, lr=0.1), Adam)
    with pytest.raises(NotImplementedError, match="fp16-adam-stats"):
        native_fused_adamw.native_fused_adam(cpu, use_fp16_stats=True, lr=0.1)


def test_native_fused_adamw_is_adamw_and_accepts_fairseq_flat_fp32_params():
    """The class fairseq gets on a GPU without apex (torch's fused AdamW also runs on the CPU)."""
    torch.manual_seed(0)
    flat = torch.nn.Parameter(torch.randn(64))  # FP16Optimizer hands over ONE flat fp32 tensor
    ref = torch.nn.Parameter(flat.detach().clone())
    config = dict(lr=0.01, betas=[0.9, 0.98], eps=1e-6, weight_decay=0.01)  # betas as fairseq passes them
    opt = native_fused_adamw.NativeFusedAdamW([flat], **config)
    ref_opt = torch.optim.AdamW([ref], foreach=False, **{**config, "betas": (0.9, 0.98)})
    assert opt.supports_flat_params and opt.defaults["fused"]
    for _ in range(5):
        g = torch.randn(64)
        flat.grad, ref.grad = g.clone(), g.clone()
        opt.step()
        ref_opt.step()
    assert torch.allclose(flat, ref, atol=1e-6)
    # What fairseq's FP16Optimizer.build_optimizer asks the wrapping FairseqAdam before flattening.
    from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig

    wrapper = FairseqAdam(FairseqAdamConfig(lr=[0.01], adam_betas="(0.9, 0.98)"), [flat])
    wrapper._optimizer = opt
    assert wrapper.supports_flat_params and not wrapper.supports_memory_efficient_fp16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_native_fused_adamw_on_gpu():
    p = [torch.nn.Parameter(torch.ones(8, device="cuda"))]
    opt = native_fused_adamw.native_fused_adam(p, lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    assert isinstance(opt, native_fused_adamw.NativeFusedAdamW) and opt.defaults["fused"]
