"""Training words/s of sparse_roberta with each normaliser vs stock fairseq RoBERTa of the same size.

Builds the models through fairseq's own option parsing (the same code path as fairseq-train)
and times full masked-LM training steps (forward, LM head on the masked positions, backward,
Adam) on random token batches, interleaving the models. Prints words/s ratios to stock roberta.
Usage: python benchmarks/bench_training.py [--arch-dims tiny|base] [--seq-len 128] [--batch 16]
"""

import argparse
import os
import tempfile

import torch
from fairseq import options, tasks
from harness import median_times

import fairseq_sparse  # noqa: F401

DIMS = {
    "tiny": [
        "--encoder-layers",
        "2",
        "--encoder-embed-dim",
        "64",
        "--encoder-ffn-embed-dim",
        "256",
        "--encoder-attention-heads",
        "4",
    ],
    "small": [
        "--encoder-layers",
        "4",
        "--encoder-embed-dim",
        "256",
        "--encoder-ffn-embed-dim",
        "1024",
        "--encoder-attention-heads",
        "4",
    ],
}
NORMALIZERS = [
    ["softmax"],
    ["sparsemax"],
    ["sparsegen_lin", "--sparsegen-lambda", "-4"],
    ["entmax15"],
    ["entmax_bisect", "--learn-entmax-alpha"],
]


def dictionary_dir(vocab):
    path = tempfile.mkdtemp()
    with open(os.path.join(path, "dict.txt"), "w") as f:
        f.writelines(f"w{i} 1\n" for i in range(vocab))
    return path


def build(data, seq_len, extra):
    torch.manual_seed(0)
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, [data, "--task", "masked_lm", "--tokens-per-sample", str(seq_len), "--dropout", "0.1"] + extra
    )
    task = tasks.setup_task(args)
    model = task.build_model(args)
    return model, torch.optim.Adam(model.parameters(), lr=1e-4)


def step_fn(model, optim, tokens, masked, dam_lambda=0.0):
    """One masked-LM training step; a model with a learned mask also pays its L1 penalty."""
    dam = getattr(model.encoder.sentence_encoder, "attn_masks", None)
    dam = getattr(dam, "dam", None)

    def step():
        optim.zero_grad(set_to_none=True)
        logits, _ = model(tokens, masked_tokens=masked)
        loss = torch.nn.functional.cross_entropy(logits, tokens[masked])
        if dam is not None:
            loss = loss + dam_lambda * dam.l1_penalty(normalize=True)
        loss.backward()
        optim.step()

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", choices=sorted(DIMS), default="tiny")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--clock",
        choices=["wall", "thread"],
        default="wall",
        help="thread: CPU time of this thread, robust on a shared machine; needs OMP_NUM_THREADS=1",
    )
    args = parser.parse_args(argv)
    if args.clock == "thread" and torch.get_num_threads() != 1:
        raise SystemExit(f"--clock thread needs 1 torch thread (OMP_NUM_THREADS=1), got {torch.get_num_threads()}")
    torch.manual_seed(0)
    data = dictionary_dir(1000)
    tokens = torch.randint(4, 1000, (args.batch, args.seq_len))
    masked = torch.rand(tokens.shape) < 0.15
    runs = [("stock roberta", build(data, args.seq_len, ["--arch", "roberta"] + DIMS[args.dims]))]
    for norm in NORMALIZERS:
        runs.append(
            (
                " ".join(norm),
                build(data, args.seq_len, ["--arch", "sparse_roberta", "--attn-normalizer"] + norm + DIMS[args.dims]),
            )
        )
    for _, (model, _) in runs:
        model.train()
    times = median_times([step_fn(m, o, tokens, masked) for _, (m, o) in runs], args.repeats, clock=args.clock)
    words = tokens.numel()
    print(
        f"dims={args.dims} seq_len={args.seq_len} batch={args.batch} "
        f"threads={torch.get_num_threads()} clock={args.clock}"
    )
    print("| model | words/s | vs stock roberta |")
    print("|---|---|---|")
    for (name, _), t in zip(runs, times):
        print(f"| {name} | {words / t:,.0f} | {times[0] / t:.2f}x |")


if __name__ == "__main__":
    main()
