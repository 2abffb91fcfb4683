"""Parts 2 and 3 of the GPU check (benchmarks/gpu_check.py, whose docstring describes them): AMP
training words/s of whole models, the DAM search step included, and AdaSplash v1 against our fused
kernel. Apart from part 1 (the kernels vs SDPA) because they compare whole models and another
library rather than attention paths; imported by gpu_check.py, which puts the repository on sys.path.
"""

import os
import sys
import tempfile

import torch
import torch.nn.functional as F
from gpu_check_timing import failed, fwd_bwd, timed

from fairseq_sparse import kernels


def training_part(args, device):
    try:
        from fairseq import options, tasks

        import fairseq_sparse  # noqa: F401  (registers the models)
    except ImportError as exc:
        print(f"\n## Training: skipped, fairseq is not importable ({exc})")
        return
    print(
        f"\n## Training words/s: {args.arch_sparse} vs {args.arch_stock}, batch {args.batch} x {args.seq_len}, "
        "full masked-LM steps (forward, LM head, backward, Adam)"
    )
    data = tempfile.mkdtemp()
    with open(os.path.join(data, "dict.txt"), "w") as f:
        f.writelines(f"w{i} 1\n" for i in range(1000))
    torch.manual_seed(0)
    tokens = torch.randint(4, 1000, (args.batch, args.seq_len), device=device)
    masked = torch.rand(tokens.shape, device=device) < 0.15
    models = [("stock roberta", ["--arch", args.arch_stock])]
    models += [
        (f"sparse_roberta {n}", ["--arch", args.arch_sparse, "--attn-normalizer", n] + extra)
        for n, extra in [("softmax", []), ("sparsemax", []), ("entmax_bisect", ["--learn-entmax-alpha"])]
    ]
    # the DAM search: a fresh straight-through float mask every step (no block skipping, row kernel + mask gradient)
    models += [
        (
            f"sparse_roberta {n} DAM search",
            ["--arch", args.arch_sparse, "--attn-normalizer", n, "--attn-mask", "dam", "--dam-share-layers"],
        )
        for n in ("softmax", "sparsemax")
    ]
    amp_dtypes = [torch.float16, torch.bfloat16] if device.type == "cuda" else [torch.bfloat16]
    for amp_dtype in amp_dtypes:
        steps = []
        for name, extra in models:
            parser = options.get_training_parser()
            cfg = options.parse_args_and_arch(
                parser,
                [data, "--task", "masked_lm", "--tokens-per-sample", str(args.seq_len), "--dropout", "0.1"]
                + extra
                + args.model_args,
            )
            model = tasks.setup_task(cfg).build_model(cfg).to(device).train()
            optim = torch.optim.Adam(model.parameters(), lr=1e-5)
            scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16 and device.type == "cuda")

            def step(model=model, optim=optim, scaler=scaler):
                optim.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=amp_dtype):
                    logits, _ = model(tokens, masked_tokens=masked)
                    loss = F.cross_entropy(logits.float(), tokens[masked])
                scaler.scale(loss).backward()
                scaler.step(optim)
                scaler.update()

            steps.append((name, step))
        times = timed([s for _, s in steps], args.repeats, args.warmup)
        words = tokens.numel()
        print(f"\nautocast {str(amp_dtype).replace('torch.', '')}")
        print("| model | words/s | vs stock roberta |")
        print("|---|---|---|")
        for (name, _), t in zip(steps, times):
            print(f"| {name} | {words / t:,.0f} | {times[0] / t:.2f}x |")
        by_name = dict(zip((name for name, _ in steps), times))
        for n in ("softmax", "sparsemax"):
            dam, dense = by_name.get(f"sparse_roberta {n} DAM search"), by_name.get(f"sparse_roberta {n}")
            if dam and dense:
                print(f"DAM search step / dense step, {n}: {dam / dense:.2f}x the time")
        sys.stdout.flush()
        del steps


def adasplash_part(args, device, dtype):
    """AdaSplash v1 vs our fused kernel, entmax-1.5, no mask, no dropout (skipped when adasplash is absent)."""
    try:
        import adasplash
    except ImportError as exc:
        print(f"\n## AdaSplash: skipped, the adasplash package does not import ({exc})")
        return
    ada = getattr(adasplash, "adasplash_v1", None) or adasplash.adasplash
    print(
        f"\n## AdaSplash v1 ({getattr(adasplash, '__version__', '?')}, {ada.__name__}) vs our fused entmax-1.5: "
        "no mask, no dropout, fwd+bwd"
    )
    print("| N | batch | max abs output diff | adasplash ms | ours ms | ours / adasplash |")
    print("|---|---|---|---|---|---|")
    for n in args.lengths:
        batch = max(1, args.tokens // n)
        torch.manual_seed(0)
        q, k, v = (
            torch.randn((batch, args.heads, n, args.dim), device=device, dtype=dtype, requires_grad=True)
            for _ in range(3)
        )
        grad = torch.randn_like(q)
        try:
            with torch.no_grad():
                theirs = ada(q, k, v, alpha=1.5, niter=10, is_causal=False, varlen=None).float()
                ours = kernels.sparse_attention(q, k, v, "entmax15").float()
            diff = float((theirs - ours).abs().max())
            if not diff <= args.adasplash_tol:
                raise AssertionError(f"outputs differ by {diff:.3g} > {args.adasplash_tol} (N = {n})")
            t_theirs, t_ours = timed(
                [
                    fwd_bwd(lambda: ada(q, k, v, alpha=1.5, niter=10, is_causal=False, varlen=None), (q, k, v), grad),
                    fwd_bwd(lambda: kernels.sparse_attention(q, k, v, "entmax15"), (q, k, v), grad),
                ],
                args.repeats,
                args.warmup,
            )
            print(
                f"| {n} | {batch} | {diff:.2e} | {1000 * t_theirs:.2f} | {1000 * t_ours:.2f} | "
                f"{t_ours / t_theirs:.2f}x |"
            )
        except Exception as exc:  # noqa: BLE001 - report and go on
            failed("adasplash", f"N = {n}", exc)
        sys.stdout.flush()
