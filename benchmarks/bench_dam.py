"""Cost of SparseBERT training steps: a DAM search step and a frozen-mask step vs a plain MLM step.

Builds the three models through fairseq's own option parsing (as fairseq-train does), all of
the same size and seed, and times full masked-LM training steps (forward, LM head on the masked
positions, backward, Adam) on the same random token batch, interleaving the models so machine
noise hits all alike. Prints seconds per step and the ratio to the plain step.
  plain   sparse_roberta (softmax, no mask): fused SDPA
  search  sparsebert (learned DAM, diagonal-free, shared by layers) + L1 penalty: a Gumbel-sigmoid
          sample per forward and masked_normalize with a gradient to the mask
  frozen  sparse_roberta --attn-mask file with the binarised mask of that DAM (fused SDPA, bool mask)
Usage: python benchmarks/bench_dam.py [--dims tiny|small] [--seq-len 128] [--batch 16] [--repeats 7]
"""

import argparse
import os

import numpy as np
import torch
from bench_training import DIMS, build, dictionary_dir, step_fn
from harness import median_times

import fairseq_sparse  # noqa: F401


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", choices=sorted(DIMS), default="tiny")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    data = dictionary_dir(1000)
    torch.manual_seed(0)
    tokens = torch.randint(4, 1000, (args.batch, args.seq_len))
    masked = torch.rand(tokens.shape) < 0.15
    dims = DIMS[args.dims]
    plain = build(data, args.seq_len, ["--arch", "sparse_roberta"] + dims)
    search = build(data, args.seq_len, ["--arch", "sparsebert_base"] + dims)
    mask = search[0].encoder.sentence_encoder.attn_masks.dam.export(args.seq_len)
    mask_path = os.path.join(data, "mask.npy")
    np.save(mask_path, mask)
    frozen = build(
        data, args.seq_len, ["--arch", "sparse_roberta", "--attn-mask", "file", "--attn-mask-file", mask_path] + dims
    )
    runs = [("plain MLM step", plain, 0.0), ("DAM search step", search, 0.1), ("frozen-mask step", frozen, 0.0)]
    times = median_times([step_fn(m, o, tokens, masked, lam) for _, (m, o), lam in runs], args.repeats)
    print(
        f"dims={args.dims} seq_len={args.seq_len} batch={args.batch} threads={torch.get_num_threads()} "
        f"frozen mask density={mask.mean():.3f} repeats={args.repeats}"
    )
    print("| step | ms | vs plain MLM step |")
    print("|---|---|---|")
    for (name, _, _), t in zip(runs, times):
        print(f"| {name} | {1000 * t:.1f} | {t / times[0]:.2f}x |")


if __name__ == "__main__":
    main()
