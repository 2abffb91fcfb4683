"""The environment report behind `fairseq-sparse-env`: versions, devices, precisions, and the
LayerNorm/Adam/LAMB and attention kernels fairseq will actually use on this machine."""

import importlib
import platform
from dataclasses import asdict

import torch

from .apex_fallbacks import KernelStatus, apex_installed, apply_apex_fallbacks, selftest_optimizer
from .optim.native_fused_adamw import native_fused_adam


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
        selftest_optimizer(lambda params, lr: torch.optim.AdamW(params, lr=lr, fused=True))
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
    backends = {
        "flash": "FLASH_ATTENTION",
        "mem_efficient": "EFFICIENT_ATTENTION",
        "math": "MATH",
        "cudnn": "CUDNN_ATTENTION",
    }
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
        devices.append(
            {
                "index": i,
                "name": props.name,
                "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1),
            }
        )
    return devices


def _apex_version():
    if not apex_installed():
        return None
    try:
        return getattr(importlib.import_module("apex"), "__version__", "unknown")
    except Exception as e:
        return f"import failed: {type(e).__name__}: {e}"


def describe_environment():
    """Versions, devices, precisions and the fused kernels fairseq will actually use, as a dict.

    It applies the apex fallbacks first, as building a sparse_roberta model does.
    """
    import fairseq

    apex_status = apply_apex_fallbacks()
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
            "installed": apex_installed(),
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
