"""Which fused kernels fairseq uses here, chosen so a broken apex can never crash training.

fairseq decides at import time: `fairseq.modules.layer_norm` sets `has_fused_layernorm = True`
as soon as `from apex.normalization import FusedLayerNorm` imports, and `LayerNorm(...)` then
builds apex's FusedLayerNorm on any CUDA machine. An apex installed without (or with mismatched)
CUDA extensions imports fine and only fails when the layer is constructed or run ("No module named
'fused_layer_norm_cuda'", NVIDIA/apex#156, #499; fairseq#3176), i.e. in the middle of model
building. Likewise `fairseq.optim.fused_adam.get_fused_adam_class` trusts apex's own flags.

`apply_safe_apex_fallbacks()` (called when fairseq_sparse is imported) checks each apex kernel:
it must import together with its CUDA extension, and -- on a CUDA machine -- a tiny
construction + forward/step on the GPU must run and give finite, correct numbers. A kernel that
fails is switched off in fairseq (fairseq then builds torch.nn.LayerNorm / its own Adam), and
when apex's FusedAdam is not usable, `--optimizer adam` on CUDA gets PyTorch's native fused AdamW
instead (same AdamW update as apex's FusedAdam). Mixed precision needs nothing from apex:
fairseq's `--amp` is torch's native AMP, `--fp16`/`--bf16` are plain PyTorch.
Set FAIRSEQ_SPARSE_NATIVE_FUSED_ADAM=0 to keep fairseq's pure-PyTorch Adam instead.

Probing apex on CUDA creates a CUDA context in the importing process; it happens only when apex
is installed and its extensions import.
"""
import importlib
import importlib.util
import logging
import os
import platform
from dataclasses import asdict, dataclass

import torch

logger = logging.getLogger(__name__)

NATIVE_FUSED_ADAM_ENV = "FAIRSEQ_SPARSE_NATIVE_FUSED_ADAM"
APEX_KERNELS = ("FusedLayerNorm", "FusedAdam", "FusedLAMB")


@dataclass
class KernelStatus:
    available: bool
    reason: str


_status_cache = None
_fairseq_fused_adam_getter = None  # fairseq's own getter, kept for when apex's FusedAdam works


# ---- probing -------------------------------------------------------------------------------
def _apex_installed():
    try:
        return importlib.util.find_spec("apex") is not None
    except (ImportError, ValueError):
        return False


def _import_layernorm():
    from apex.normalization import FusedLayerNorm

    importlib.import_module("fused_layer_norm_cuda")  # what apex loads lazily in __init__
    return FusedLayerNorm


def _multi_tensor_ready():
    from apex.multi_tensor_apply import multi_tensor_applier

    importlib.import_module("amp_C")
    if not multi_tensor_applier.available:
        raise ImportError("apex.multi_tensor_apply reports its CUDA kernels unavailable")


def _import_adam():
    try:  # fairseq prefers apex's "deprecated" standalone kernel (FusedAdamV1)
        importlib.import_module("fused_adam_cuda")
        from fairseq.optim.fused_adam import FusedAdamV1

        return FusedAdamV1
    except ImportError:
        pass
    _multi_tensor_ready()
    from fairseq.optim.fused_adam import FusedAdamV2

    if FusedAdamV2 is None:
        raise ImportError("fairseq could not define FusedAdamV2 from apex.optimizers.FusedAdam")
    return FusedAdamV2


def _import_lamb():
    _multi_tensor_ready()
    from apex.optimizers import FusedLAMB

    return FusedLAMB


def _selftest_layernorm(cls):
    x = torch.randn(4, 16, device="cuda")
    layer = cls(16).cuda()
    y = layer(x)
    ref = torch.nn.functional.layer_norm(x, (16,), layer.weight, layer.bias, layer.eps)
    torch.cuda.synchronize()
    if not torch.allclose(y, ref, atol=1e-4):
        raise RuntimeError(f"output differs from torch layer_norm by {(y - ref).abs().max().item():.3g}")


def _selftest_optimizer(cls):
    p = torch.nn.Parameter(torch.ones(16, device="cuda"))
    opt = cls([p], lr=0.1)
    p.grad = torch.ones_like(p)
    opt.step()
    torch.cuda.synchronize()
    if not (torch.isfinite(p).all() and (p < 1).all()):
        raise RuntimeError("one optimizer step did not decrease the parameters as expected")


_PROBES = {
    "FusedLayerNorm": (_import_layernorm, _selftest_layernorm),
    "FusedAdam": (_import_adam, _selftest_optimizer),
    "FusedLAMB": (_import_lamb, _selftest_optimizer),
}


def _probe(name):
    load, selftest = _PROBES[name]
    try:
        cls = load()
    except Exception as e:  # a broken build fails with ImportError, OSError, RuntimeError, ...
        return KernelStatus(False, f"apex is installed but broken: {type(e).__name__}: {e}")
    if not torch.cuda.is_available():
        return KernelStatus(False, "imports, but CUDA is not available (apex kernels are GPU-only)")
    try:
        selftest(cls)
    except Exception as e:
        return KernelStatus(False, f"imports, but the CUDA self-test failed: {type(e).__name__}: {e}")
    return KernelStatus(True, "imports and passed a CUDA self-test")


def probe_apex(refresh=False):
    """{kernel name: KernelStatus} for apex's FusedLayerNorm, FusedAdam and FusedLAMB (cached)."""
    global _status_cache
    if _status_cache is None or refresh:
        if not _apex_installed():
            _status_cache = {k: KernelStatus(False, "apex is not installed") for k in APEX_KERNELS}
        else:
            _status_cache = {k: _probe(k) for k in APEX_KERNELS}
    return _status_cache


# ---- the native fused AdamW fallback -----------------------------------------------------------
def _flat_tensors(params):
    for p in params:
        if isinstance(p, dict):
            yield from p["params"]
        else:
            yield p


class NativeFusedAdamW(torch.optim.AdamW):
    """torch.optim.AdamW(fused=True) with the capability flags fairseq's FP16Optimizer checks.

    With --fp16/--bf16 fairseq flattens the fp32 master weights into one tensor and refuses an
    optimizer without `supports_flat_params`; AdamW is element-wise, so a flat tensor is fine.
    """

    supports_flat_params = True
    supports_memory_efficient_fp16 = False  # half-precision params go to fairseq's Adam instead

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         fused=True)


def native_fused_adam(params, use_fp16_stats=False, **config):
    """What fairseq's FairseqAdam builds when it asks for a fused Adam and apex has none.

    torch.optim.AdamW(fused=True) for fp32 CUDA parameters (with --fp16/--bf16 fairseq hands the
    optimizer fp32 master copies). Half-precision parameters (--memory-efficient-fp16/bf16) keep
    fairseq's Adam, which does its arithmetic in fp32 as apex's FusedAdam does.
    """
    if use_fp16_stats:
        raise NotImplementedError("--fp16-adam-stats needs apex's FusedAdamV1 (fused_adam_cuda)")
    params = list(params)
    tensors = list(_flat_tensors(params))
    if tensors and all(t.is_cuda and t.dtype == torch.float32 for t in tensors):
        return NativeFusedAdamW(params, **config)
    from fairseq.optim.adam import Adam

    return Adam(params, **config)


def _native_fused_adam_wanted():
    return os.environ.get(NATIVE_FUSED_ADAM_ENV, "1") not in ("0", "false", "False", "no")


def _safe_fused_adam_getter():
    """Replacement for fairseq's get_fused_adam_class: never hands out a broken apex class."""
    if probe_apex()["FusedAdam"].available:
        return _fairseq_fused_adam_getter()
    if torch.cuda.is_available() and _native_fused_adam_wanted():
        return native_fused_adam
    return None


def apply_safe_apex_fallbacks():
    """Switch every apex kernel that does not work off in fairseq (idempotent; cheap without apex).

    Returns the {kernel: KernelStatus} it acted on.
    """
    global _fairseq_fused_adam_getter
    status = probe_apex()
    import fairseq.modules.layer_norm as layer_norm
    import fairseq.optim.adam as adam
    import fairseq.optim.fused_adam as fused_adam

    if layer_norm.has_fused_layernorm and not status["FusedLayerNorm"].available:
        logger.info("apex FusedLayerNorm not used (%s): fairseq builds torch.nn.LayerNorm",
                    status["FusedLayerNorm"].reason)
        layer_norm.has_fused_layernorm = False
    if _fairseq_fused_adam_getter is None:
        _fairseq_fused_adam_getter = fused_adam.get_fused_adam_class
    fused_adam.get_fused_adam_class = _safe_fused_adam_getter
    adam.get_fused_adam_class = _safe_fused_adam_getter  # adam.py imported the name directly
    return status


# ---- the report ------------------------------------------------------------------------------
def _fairseq_layer_norm_choice():
    from fairseq.modules.layer_norm import LayerNorm

    try:
        layer = LayerNorm(8)
    except Exception as e:
        return f"ERROR building fairseq LayerNorm: {type(e).__name__}: {e}"
    cls = type(layer)
    return f"{cls.__module__}.{cls.__qualname__}"


def _fairseq_adam_choice():
    import fairseq.optim.adam as adam

    if not torch.cuda.is_available():
        return "fairseq.optim.adam.Adam (pure PyTorch; fused Adam is only used on CUDA)"
    try:
        cls = adam.get_fused_adam_class()
    except Exception as e:
        return f"ERROR asking fairseq for a fused Adam: {type(e).__name__}: {e}"
    if cls is None:
        return "fairseq.optim.adam.Adam (pure PyTorch)"
    if cls is native_fused_adam:
        return "torch.optim.AdamW(fused=True) (native, NativeFusedAdamW; fairseq Adam for half-precision parameters)"
    return f"apex {cls.__qualname__} via fairseq"


def _native_fused_adamw_status():
    if not torch.cuda.is_available():
        return KernelStatus(False, "CUDA is not available")
    try:
        _selftest_optimizer(lambda params, lr: torch.optim.AdamW(params, lr=lr, fused=True))
    except Exception as e:
        return KernelStatus(False, f"self-test failed: {type(e).__name__}: {e}")
    return KernelStatus(True, "passed a CUDA self-test")


def _sdpa_backends():
    flags = {}
    for name in ("flash", "mem_efficient", "math", "cudnn"):
        fn = getattr(torch.backends.cuda, f"{name}_sdp_enabled", None)
        flags[name] = {"enabled": bool(fn()) if fn else False}
    if not torch.cuda.is_available():
        flags["note"] = "no CUDA: these flags only concern GPUs; scaled_dot_product_attention uses its CPU kernels"
        return flags
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return flags
    backends = {"flash": "FLASH_ATTENTION", "mem_efficient": "EFFICIENT_ATTENTION", "math": "MATH",
                "cudnn": "CUDNN_ATTENTION"}
    q = torch.randn(1, 2, 16, 64, device="cuda", dtype=torch.float16)
    for name, member in backends.items():
        backend = getattr(SDPBackend, member, None)
        if backend is None:
            flags[name]["usable_here"] = False
            continue
        try:
            with sdpa_kernel(backend):
                torch.nn.functional.scaled_dot_product_attention(q, q, q)
            torch.cuda.synchronize()
            flags[name]["usable_here"] = True
        except Exception as e:
            flags[name]["usable_here"] = False
            flags[name]["reason"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return flags


def _guarded(fn, *args):
    """fn(*args), or the error as text: a half-working CUDA install must not crash the report."""
    try:
        return fn(*args)
    except Exception as e:
        return f"ERROR: {type(e).__name__}: {e}"


def _devices():
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append({"index": i, "name": props.name, "capability": f"{props.major}.{props.minor}",
                        "memory_gib": round(props.total_memory / 2**30, 1)})
    return devices


def _apex_version():
    if not _apex_installed():
        return None
    try:
        return getattr(importlib.import_module("apex"), "__version__", "unknown")
    except Exception as e:
        return f"import failed: {type(e).__name__}: {e}"


def describe_environment():
    """Versions, devices, precisions and the fused kernels fairseq will actually use, as a dict."""
    import fairseq

    apex_status = apply_safe_apex_fallbacks()
    cuda = torch.cuda.is_available()
    lamb = apex_status["FusedLAMB"]
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "fairseq": getattr(fairseq, "__version__", "unknown"),
        "cuda": {
            "available": cuda,
            "torch_cuda_version": torch.version.cuda,
            "cudnn": _guarded(torch.backends.cudnn.version) if cuda else None,
            "devices": _guarded(_devices) if cuda else [],
        },
        "precision": {
            "fp32": True,
            "fp16 (--fp16)": cuda,
            "bf16 (--bf16)": _guarded(lambda: bool(torch.cuda.is_bf16_supported())) if cuda else False,
            "native amp (--amp)": cuda,
            "tf32_matmul_allowed": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else False,
        },
        "apex": {
            "installed": _apex_installed(),
            "version": _apex_version(),
            "kernels": {k: asdict(v) for k, v in apex_status.items()},
        },
        "native": {"fused_adamw": asdict(_native_fused_adamw_status())},
        "fairseq_uses": {
            "layer_norm": _fairseq_layer_norm_choice(),
            "adam": _fairseq_adam_choice(),
            "lamb": "apex FusedLAMB" if lamb.available else f"unavailable (--optimizer lamb needs apex): {lamb.reason}",
        },
        "sdpa_backends": _guarded(_sdpa_backends),
    }
