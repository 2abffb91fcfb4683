"""fairseq-sparse-finetune: fine-tune a checkpoint on one's own labelled TSV/CSV files, in one command.

    fairseq-sparse-finetune --train train.tsv --valid dev.tsv [--test test.tsv] --checkpoint minilm \
        --out-dir runs/mine [--text-columns 0 [1]] [--label-column -1] [--header | --no-header] [--encoding utf-8] \
        [--epochs 3 --lr 2e-5 --batch-size 32 --max-length 128 --seed 1] \
        [any fairseq-train option, e.g. --attn-normalizer sparsegen_lin --sparsegen-lambda -2]

The work is in fairseq_sparse.finetune.job; this module only parses and calls.
"""

import argparse
import json
import logging
import sys


def build_parser():
    p = argparse.ArgumentParser(
        prog="fairseq-sparse-finetune",
        description=__doc__.splitlines()[0],
        epilog="Options not listed here go to fairseq-train unchanged.",
    )
    p.add_argument("--train", required=True, help="labelled training file (.tsv or .csv)")
    p.add_argument("--valid", required=True, help="labelled file for model selection (best epoch)")
    p.add_argument("--test", help="labelled file scored once with the selected model")
    p.add_argument(
        "--checkpoint", required=True, help="fairseq-sparse-convert-bert output directory, or a fairseq checkpoint .pt"
    )
    p.add_argument(
        "--out-dir",
        required=True,
        help="data/, checkpoints/, train.log, results.json, predictions_{valid,test}.tsv go here",
    )
    g = p.add_argument_group("files")
    g.add_argument(
        "--text-columns",
        nargs="+",
        default=["0"],
        metavar="COL",
        help="one or two text columns: 0-based numbers or, with --header, names (default: 0)",
    )
    g.add_argument("--label-column", default="-1", metavar="COL", help="label column (default: -1, the last)")
    g.add_argument(
        "--header",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the first row holds column names (--no-header: it is an example; default: detected "
        "when its label cell is no label of the other rows, refused when unclear)",
    )
    g.add_argument("--delimiter", help="field separator (default: tab for .tsv, comma for .csv)")
    g.add_argument(
        "--encoding",
        default="utf-8",
        help="the files' text encoding, e.g. cp1252 (default utf-8; a byte-order mark is dropped)",
    )
    g = p.add_argument_group("vocabulary (default: dict.txt and vocab.txt next to the checkpoint)")
    g.add_argument("--dict", dest="dictionary", help="the checkpoint's fairseq dict.txt")
    g.add_argument("--vocab", help="WordPiece vocab.txt")
    g.add_argument("--gpt2-encoder-json", help="GPT-2 BPE encoder.json (fairseq RoBERTa checkpoints)")
    g.add_argument("--gpt2-vocab-bpe", help="GPT-2 BPE vocab.bpe")
    g.add_argument("--cased", action="store_true", default=None, help="cased WordPiece (default: the checkpoint's)")
    g = p.add_argument_group("training")
    g.add_argument("--max-length", type=int, default=128, help="tokens kept per text (default 128)")
    g.add_argument("--epochs", type=int, default=3)
    g.add_argument("--lr", type=float, default=2e-5)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--warmup", type=float, default=0.06, help="warm-up, as a fraction of the updates (default 0.06)")
    g.add_argument(
        "--weight-decay", type=float, default=0.01, help="not applied to biases and LayerNorm (default 0.01)"
    )
    g.add_argument("--seed", type=int, default=1, help="training seed: data order, dropout and the new output layer")
    g.add_argument("--log-interval", type=int, default=10, help="updates between progress lines (default 10)")
    return p


def main(argv=None):
    args, fairseq_args = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from fairseq_sparse.finetune.job import FinetuneJob, finetune

    job = FinetuneJob(fairseq_args=fairseq_args, **vars(args))
    try:
        results = finetune(job)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        sys.exit(f"fairseq-sparse-finetune: error: {e}")
    print(json.dumps(results["scores"], indent=1))


if __name__ == "__main__":
    main()
