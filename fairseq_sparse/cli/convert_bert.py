"""fairseq-sparse-convert-bert SRC OUT_DIR: Hugging Face BERT directory -> fairseq checkpoint."""

import argparse
import logging
import sys


def build_parser():
    p = argparse.ArgumentParser(
        prog="fairseq-sparse-convert-bert",
        description="Convert a Hugging Face BERT directory (config.json, model.safetensors, vocab.txt) "
        "into OUT_DIR/model.pt + dict.txt + vocab.txt for the sparse_roberta model.",
    )
    p.add_argument("src", metavar="SRC", help="Hugging Face BERT directory")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output directory (created if missing)")
    p.add_argument(
        "--arch",
        default=None,
        help="fairseq architecture to write (default: sparse_roberta; 'roberta' for stock fairseq, "
        "which cannot use BERT's LayerNorm epsilon)",
    )
    p.add_argument(
        "--pooler-head",
        metavar="NAME",
        default=None,
        help="store BERT's pooler as the dense layer of classification head NAME "
        "(e.g. sentence_classification_head); its output layer is made by the fine-tuning "
        "run, from its --seed and --num-classes",
    )
    p.add_argument("--seed", type=int, default=1, help="seed for parameters BERT does not provide")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from fairseq_sparse.convert import convert_bert

    try:
        path = convert_bert(args.src, args.out_dir, arch=args.arch, pooler_head=args.pooler_head, seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"fairseq-sparse-convert-bert: error: {e}")
    print(path)


if __name__ == "__main__":
    main()
