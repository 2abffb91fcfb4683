"""Compile the Triton kernels for a GPU architecture on a machine without a GPU (no launch).

    python benchmarks/compile_kernels.py [--arch 90] [--quick | --each-mode] [--only NAME]

Catches what the Triton interpreter cannot: code that only the compiler rejects (loop-carried
types, non-constexpr globals, dot shapes). Every variant the attention module can launch:
bf16 / fp16 / fp32 x normaliser mode x padding x keep mask x dropout, forward and both backward
kernels, and the row normaliser kernels. --quick compiles the three attention kernels with every
feature switched on (what the tests run); --each-mode compiles every kernel once per normaliser
mode (bf16, every feature on); --only keeps the kernels whose name contains NAME. Run without
TRITON_INTERPRET set.
"""

import argparse
import inspect
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

POINTERS = {
    "Q": "act",
    "K": "act",
    "V": "act",
    "O": "act",
    "DO": "act",
    "DQ": "act",
    "DK": "act",
    "DV": "act",
    "PAD": "*u8",
    "KEEP": "*u8",
    "KV_NUM": "*i32",
    "KV_IDX": "*i32",
    "Q_NUM": "*i32",
    "Q_IDX": "*i32",
    "PASSES": "*i32",
}
FLOATS = {"p_drop", "qk_scale", "tol", "scale"}
INTS = {"H", "N", "D", "HK"}  # upper-case sizes; every other upper-case name is a float32 buffer


def compile_one(fn, dtype, constexprs, target):
    import triton
    from triton.compiler import ASTSource

    names = list(inspect.signature(fn.fn).parameters)
    consts = {k: v for k, v in constexprs.items() if k in names}
    signature = {}
    for name in names:
        if name in consts:
            signature[name] = "constexpr"
        elif name in POINTERS:
            signature[name] = f"*{dtype}" if POINTERS[name] == "act" else POINTERS[name]
        elif name.isupper() and name not in INTS:
            signature[name] = "*fp32"
        else:
            signature[name] = "fp32" if name in FLOATS else "i32"
    src = ASTSource(fn=fn, signature=signature, constexprs={(names.index(k),): v for k, v in consts.items()})
    triton.compile(src, target=target)


def variants(tk, scope):
    """(kernel, dtype, constexprs) to compile: "all", "each-mode" or "quick" (see the module doc)."""
    attention = (tk.attn_fwd, tk.attn_bwd_dq, tk.attn_bwd_dkdv)
    all_on = dict(
        HAS_PAD=True, HAS_KEEP=True, DROPOUT=True, UPCAST=False, IEEE=False, BLOCK_M=64, BLOCK_N=64, BLOCK_D=64
    )
    if scope == "quick":
        return [
            (tk.attn_fwd, "bf16", dict(all_on, MODE=1)),
            (tk.attn_bwd_dq, "bf16", dict(all_on, MODE=2)),
            (tk.attn_bwd_dkdv, "bf16", dict(all_on, MODE=0)),
        ]
    jobs = []
    if scope == "each-mode":
        jobs += [(fn, "bf16", dict(all_on, MODE=mode)) for mode in (0, 1, 2) for fn in attention]
    else:
        flags = itertools.product(("bf16", "fp16", "fp32"), (0, 1, 2), *[(False, True)] * 3)
        for dtype, mode, pad, keep, drop in flags:
            if dtype != "bf16" and (pad or drop):
                continue
            flags = dict(
                MODE=mode,
                HAS_PAD=pad,
                HAS_KEEP=keep,
                DROPOUT=drop,
                UPCAST=False,
                IEEE=dtype == "fp32",
                BLOCK_M=64,
                BLOCK_N=64,
                BLOCK_D=64,
            )
            jobs += [(fn, dtype, flags) for fn in attention]
    jobs += [
        (fn, "fp32", dict(MODE=mode, BLOCK=1024))
        for mode in (0, 1, 2)
        for fn in (tk.row_normalize_fwd, tk.row_normalize_bwd)
    ]
    jobs.append((tk.dropout_scale_dense, "fp32", dict(BLOCK=16)))
    return jobs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x 10 (90: H100/H200)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--quick", action="store_const", dest="scope", const="quick", default="all")
    scope.add_argument("--each-mode", action="store_const", dest="scope", const="each-mode")
    parser.add_argument("--only", metavar="NAME", help="only the kernels whose name contains NAME (e.g. attn_bwd)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        parser.error("unset TRITON_INTERPRET: the interpreter's kernels cannot be compiled")
    from triton.backends.compiler import GPUTarget

    from fairseq_sparse.kernels._runtime import kernels

    target = GPUTarget("cuda", args.arch, 32)
    jobs = [job for job in variants(kernels(), args.scope) if args.only is None or args.only in job[0].__name__]
    start = time.time()
    for fn, dtype, flags in jobs:
        compile_one(fn, dtype, flags, target)
    print(f"compiled {len(jobs)} kernel variants for {target} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
