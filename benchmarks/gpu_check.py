"""The GPU check: sparse attention kernels vs PyTorch SDPA (flash), then AMP training words/s.

    python benchmarks/gpu_check.py [--part kernels|training|all] [--lengths 512 1024 4096]
    python benchmarks/gpu_check.py --cpu-dry-run     # the same logic on tiny CPU shapes (tests)

Part 1 (kernels; needs torch + triton, not fairseq): bf16, 12 heads x 64 dims, 16k tokens per
batch (batch = 16384 / N). fwd+bwd time of each path over F.scaled_dot_product_attention with
the flash backend, no mask (the 1.00x row):
  <normaliser> eager    scores -> fairseq_sparse.normalizers -> values (the CPU code path)
  <normaliser> row kernel  the same with the Triton row normaliser kernel (the module's path when
                        attention probabilities are needed); first length only
  <normaliser> fused    fairseq_sparse.kernels.sparse_attention (the module's default path)
and a frozen mask at ~10% density (a Longformer band, window 5% of N, one global token):
  sdpa masked dense        SDPA with the bool mask (no block skipping)
  flex block-sparse        FlexAttention with the mask's BlockMask (softmax)
  sparsemax fused masked   the fused kernel with the mask (empty blocks skipped)
Part 2 (training; needs fairseq): words/s of full masked-LM training steps (forward, LM head,
backward, Adam) of sparse_roberta_base with softmax, sparsemax and learned-alpha entmax vs stock
roberta_base, and a DAM search step (--attn-mask dam: a learned float mask, attention through the
Triton row kernel plus the mask gradient) vs the dense step of the same normaliser, under
torch.autocast fp16 (with a GradScaler) and bf16, batch 8 x 512 tokens.
Part 3 (adasplash; only when the `adasplash` package imports, nothing is installed): AdaSplash v1
against our fused kernel on the case both support (entmax-1.5, no mask, no dropout): the largest
output difference and the fwd+bwd speed ratio.

Any failing path is reported as it happens and makes the script exit with status 1 at the end.

Goals (issue 11): fused sparse attention <= 1.5x SDPA fwd+bwd at N=512; the 10%-density frozen
mask >= 3x faster than dense at N=4096.
"""

import argparse
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
if HERE not in sys.path:  # the parts' modules beside this file, also when it is loaded by path (tests)
    sys.path.insert(0, HERE)

# Part 1 lives here, parts 2 and 3 in gpu_check_models.py, the timing and the failure list in gpu_check_timing.py
from gpu_check_models import adasplash_part, training_part  # noqa: E402
from gpu_check_timing import FAILURES, failed, forward_only, fwd_bwd, timed  # noqa: E402

from fairseq_sparse import kernels  # noqa: E402
from fairseq_sparse.masks import build_fixed_mask  # noqa: E402
from fairseq_sparse.normalizers import get_normalizer  # noqa: E402

NORMALIZERS = [("sparsemax", {}), ("sparsegen_lin", {"lam": -4.0}), ("entmax15", {}), ("entmax_bisect", {"alpha": 1.5})]


def eager_attention(q, k, v, normalise, keep=None):
    s = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if keep is not None:
        s = s.masked_fill(~keep, float("-inf"))
    return torch.matmul(normalise(s).to(v.dtype), v)


def sdpa_flash(q, k, v):
    if q.is_cuda:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def frozen_mask(n, device):
    keep = build_fixed_mask("longformer", n, window=max(1, round(0.05 * n)), num_global=1, device=device)
    return keep[None]


def kernel_part(args, device, dtype):
    print(
        f"## Kernels: {dtype}, {args.heads} heads x {args.dim} dims, {args.tokens} tokens per batch; "
        "fwd+bwd time / SDPA flash (no mask)"
    )
    for n in args.lengths:
        batch = max(1, args.tokens // n)
        shape = (batch, args.heads, n, args.dim)
        torch.manual_seed(0)
        q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        grad = torch.randn(shape, device=device, dtype=dtype)
        leaves = (q, k, v)
        keep = frozen_mask(n, device)
        rows = [("sdpa softmax (flash), no mask", fwd_bwd(lambda: sdpa_flash(q, k, v), leaves, grad))]
        for name, kw in NORMALIZERS:
            norm = get_normalizer(name, **kw)
            row_kw = dict(kw)
            rows.append((f"{name} eager", fwd_bwd(lambda norm=norm: eager_attention(q, k, v, norm), leaves, grad)))
            if n == args.lengths[0]:  # the row kernel compiles once per length: one length saves minutes
                rows.append(
                    (
                        f"{name} row kernel",
                        fwd_bwd(
                            lambda name=name, row_kw=row_kw: eager_attention(
                                q, k, v, lambda s: kernels.normalize(s, name, **row_kw)
                            ),
                            leaves,
                            grad,
                        ),
                    )
                )
            rows.append(
                (
                    f"{name} fused",
                    fwd_bwd(lambda name=name, kw=kw: kernels.sparse_attention(q, k, v, name, **kw), leaves, grad),
                )
            )
        density = float(keep.float().mean())
        rows.append(
            (
                "sdpa masked dense (frozen mask)",
                fwd_bwd(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=keep[None]), leaves, grad),
            )
        )
        if device.type == "cuda":
            rows.append(
                (
                    "flex block-sparse (frozen mask)",
                    fwd_bwd(lambda: kernels.flex_softmax_attention(q, k, v, keep), leaves, grad),
                )
            )
        else:  # FlexAttention has no CPU backward: the dry run times its forward
            rows.append(
                (
                    "flex block-sparse (frozen mask), forward only",
                    forward_only(lambda: kernels.flex_softmax_attention(q.detach(), k.detach(), v.detach(), keep)),
                )
            )
        rows.append(
            (
                "sparsemax fused masked (frozen mask)",
                fwd_bwd(lambda: kernels.sparse_attention(q, k, v, "sparsemax", keep=keep), leaves, grad),
            )
        )
        names, fns = zip(*rows)
        times = {}
        for name, fn in zip(names, fns):  # one at a time: a failing path is reported, the rest still run
            try:
                times[name] = timed([fn], args.repeats, args.warmup)[0]
            except Exception as exc:  # noqa: BLE001 - report and go on
                times[name] = None
                failed("kernels", name, exc)
        base = times[names[0]]
        print(f"\nN = {n} (batch {batch}); SDPA flash fwd+bwd {1000 * base:.2f} ms; frozen mask density {density:.3f}")
        print("| path | ms | / sdpa flash |")
        print("|---|---|---|")
        for name in names:
            t = times[name]
            print(f"| {name} | " + ("failed | - |" if t is None else f"{1000 * t:.2f} | {t / base:.2f}x |"))
        for name, kw in NORMALIZERS:
            try:
                with torch.no_grad():
                    passes = kernels.sparse_attention(q, k, v, name, return_stats=True, **kw)[1]["passes"].float()
                print(
                    f"{name} fused: threshold passes per query block mean {float(passes.mean()):.1f}, "
                    f"max {int(passes.max())} (forward = passes + 2 sweeps over the keys)"
                )
            except Exception as exc:  # noqa: BLE001 - report and go on
                failed("kernels", f"{name} fused threshold passes", exc)
        dense, flex, fused_masked = (
            times.get("sdpa masked dense (frozen mask)"),
            times.get("flex block-sparse (frozen mask)"),
            times.get("sparsemax fused masked (frozen mask)"),
        )
        fused = times.get("sparsemax fused")
        if dense and flex:
            print(f"frozen mask, speed-up of flex block-sparse over SDPA with the dense mask: {dense / flex:.2f}x")
        if fused and fused_masked:
            print(
                "frozen mask, speed-up of fused sparsemax with the mask over fused sparsemax without: "
                f"{fused / fused_masked:.2f}x"
            )
        sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["kernels", "training", "adasplash", "all"], default="all")
    parser.add_argument(
        "--adasplash-tol",
        type=float,
        default=2e-2,
        help="largest output difference to AdaSplash accepted (bf16 outputs)",
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 4096])
    parser.add_argument("--tokens", type=int, default=16384, help="tokens per attention batch (batch = tokens / N)")
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="training batch (sequences)")
    parser.add_argument("--seq-len", type=int, default=512, help="training sequence length")
    parser.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="run the logic on tiny CPU shapes through the Triton interpreter (needs TRITON_INTERPRET=1)",
    )
    args = parser.parse_args(argv)
    args.arch_stock, args.arch_sparse, args.model_args = "roberta_base", "sparse_roberta_base", []
    if args.cpu_dry_run:
        device, dtype = torch.device("cpu"), torch.float32
        args.lengths, args.tokens, args.heads, args.dim, args.repeats, args.warmup = [32], 32, 1, 16, 1, 0
        args.batch, args.seq_len = 2, 32
        args.arch_stock, args.arch_sparse = "roberta", "sparse_roberta_tiny"
        args.model_args = [
            "--encoder-layers",
            "2",
            "--encoder-embed-dim",
            "64",
            "--encoder-ffn-embed-dim",
            "128",
            "--encoder-attention-heads",
            "4",
        ]
        kernels.interpret_on_cpu(True)
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device: this is the GPU check (use --cpu-dry-run to exercise its logic)")
        device, dtype = torch.device("cuda"), torch.bfloat16
        print(
            f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
            f"triton {__import__('triton').__version__ if kernels.triton_available() else 'absent'}"
        )
    if args.part in ("kernels", "all"):
        kernel_part(args, device, dtype)
    if args.part in ("adasplash", "all") and device.type == "cuda":
        adasplash_part(args, device, dtype)
    if args.part in ("training", "all"):
        if args.cpu_dry_run:
            kernels.interpret_on_cpu(False)  # the model's eager path: the interpreter is too slow for a model
        try:
            training_part(args, device)
        except Exception as exc:  # noqa: BLE001 - reported, exit status 1
            failed("training", "setup", exc)
    if args.cpu_dry_run:
        print("\ndry run on the CPU: figures are not GPU figures")
    if FAILURES:
        print(f"\nGPU check FAILED: {len(FAILURES)} path(s): " + "; ".join(f"{p}: {w}" for p, w in FAILURES))
        sys.exit(1)


if __name__ == "__main__":
    main()
