"""Which apex kernels fairseq may use, checked so a broken apex can never crash training.

fairseq decides at import time: `fairseq.modules.layer_norm` sets `has_fused_layernorm = True`
as soon as `from apex.normalization import FusedLayerNorm` imports, and `LayerNorm(...)` then
builds apex's FusedLayerNorm on any CUDA machine. An apex installed without (or with mismatched)
CUDA extensions imports fine and only fails when the layer is constructed or run ("No module named
'fused_layer_norm_cuda'", NVIDIA/apex#156, #499; fairseq#3176), i.e. in the middle of model
building. Likewise `fairseq.optim.fused_adam.get_fused_adam_class` trusts apex's own flags.

`apply_apex_fallbacks()` is called by `SparseRobertaModel.build_model` (before any layer is
built; the optimizer is built after the model) and logs one INFO line naming the LayerNorm and
Adam fairseq will use. It patches fairseq, always: `get_fused_adam_class` in fairseq.optim.adam
and fairseq.optim.fused_adam is replaced by `_safe_fused_adam_getter`; and
`fairseq.modules.layer_norm.has_fused_layernorm` is set False when apex's FusedLayerNorm fails.
It checks each apex kernel: it must import together with its CUDA
extension, and -- on a CUDA machine -- a tiny construction + forward/step on the GPU must run and
give finite, correct numbers. A kernel that fails is switched off in fairseq (fairseq then builds
torch.nn.LayerNorm / its own Adam), and when apex's FusedAdam is not usable, `--optimizer adam`
on CUDA gets PyTorch's fused AdamW (`optim/native_fused_adamw.py`, the same AdamW update).
Mixed precision needs nothing from apex: `--amp` is torch's native AMP, `--fp16`/`--bf16` are
plain PyTorch. Set FAIRSEQ_SPARSE_NATIVE_FUSED_ADAM=0 to keep fairseq's pure-PyTorch Adam instead.

Probing apex on CUDA creates a CUDA context; it happens only when apex is installed and its
extensions import.
"""

import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass

import torch

from .optim.native_fused_adamw import native_fused_adam

logger = logging.getLogger(__name__)

NATIVE_FUSED_ADAM_ENV = "FAIRSEQ_SPARSE_NATIVE_FUSED_ADAM"
APEX_KERNELS = ("FusedLayerNorm", "FusedAdam", "FusedLAMB")


@dataclass
class KernelStatus:
    available: bool
    reason: str


_status_cache = None
_fairseq_fused_adam_getter = None  # fairseq's own getter, kept for when apex's FusedAdam works
_announced = False


# ---- probing -------------------------------------------------------------------------------
def apex_installed():
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


def selftest_optimizer(cls):
    """One step of `cls` on a CUDA parameter must run and decrease it (raises otherwise)."""
    p = torch.nn.Parameter(torch.ones(16, device="cuda"))
    opt = cls([p], lr=0.1)
    p.grad = torch.ones_like(p)
    opt.step()
    torch.cuda.synchronize()
    if not (torch.isfinite(p).all() and (p < 1).all()):
        raise RuntimeError("one optimizer step did not decrease the parameters as expected")


_PROBES = {
    "FusedLayerNorm": (_import_layernorm, _selftest_layernorm),
    "FusedAdam": (_import_adam, selftest_optimizer),
    "FusedLAMB": (_import_lamb, selftest_optimizer),
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
        if not apex_installed():
            _status_cache = {k: KernelStatus(False, "apex is not installed") for k in APEX_KERNELS}
        else:
            _status_cache = {k: _probe(k) for k in APEX_KERNELS}
    return _status_cache


# ---- switching fairseq over ------------------------------------------------------------------
def _native_fused_adam_wanted():
    return os.environ.get(NATIVE_FUSED_ADAM_ENV, "1") not in ("0", "false", "False", "no")


def _safe_fused_adam_getter():
    """Replacement for fairseq's get_fused_adam_class: never hands out a broken apex class."""
    if probe_apex()["FusedAdam"].available:
        return _fairseq_fused_adam_getter()
    if torch.cuda.is_available() and _native_fused_adam_wanted():
        return native_fused_adam
    return None


def _choices(status, has_fused_layernorm):
    """The one-line summary: which LayerNorm and Adam fairseq builds now, and why apex is unused."""
    cuda = torch.cuda.is_available()
    layer_norm = "apex FusedLayerNorm" if has_fused_layernorm and cuda else "torch.nn.LayerNorm"
    if not cuda:
        adam = "fairseq Adam (no CUDA)"
    elif status["FusedAdam"].available:
        adam = "apex FusedAdam"
    elif _native_fused_adam_wanted():
        adam = "torch AdamW(fused=True)"
    else:
        adam = f"fairseq Adam ({NATIVE_FUSED_ADAM_ENV}=0)"
    unused = {k: s.reason for k, s in status.items() if not s.available}
    if len(set(unused.values())) == 1:
        why = f"apex {'/'.join(unused)} unused: {next(iter(unused.values()))}"
    else:
        why = "; ".join(f"apex {k} unused: {reason}" for k, reason in unused.items())
    return f"LayerNorm = {layer_norm}, Adam = {adam}" + (f"; {why}" if why else "")


def apply_apex_fallbacks():
    """Switch every apex kernel that does not work off in fairseq (idempotent; cheap without apex).

    Logs the choice once per process (INFO) and returns the {kernel: KernelStatus} it acted on.
    """
    global _fairseq_fused_adam_getter, _announced
    status = probe_apex()
    import fairseq.modules.layer_norm as layer_norm
    import fairseq.optim.adam as adam
    import fairseq.optim.fused_adam as fused_adam

    if layer_norm.has_fused_layernorm and not status["FusedLayerNorm"].available:
        layer_norm.has_fused_layernorm = False
    if _fairseq_fused_adam_getter is None:
        _fairseq_fused_adam_getter = fused_adam.get_fused_adam_class
    fused_adam.get_fused_adam_class = _safe_fused_adam_getter
    adam.get_fused_adam_class = _safe_fused_adam_getter  # adam.py imported the name directly
    if not _announced:
        logger.info("fused kernels: %s", _choices(status, layer_norm.has_fused_layernorm))
        _announced = True
    return status
