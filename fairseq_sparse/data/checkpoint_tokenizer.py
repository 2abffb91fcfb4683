"""The checkpoint's tokenizer for the fine-tuning data readers: its command-line options, and the
fairseq BPE object built from them (the pre-training pipeline's own step is preprocess/tokenizer.py).

Data must be tokenised exactly as the checkpoint was pre-trained: GPT-2 byte BPE for
fairseq RoBERTa, WordPiece for converted BERT, a sentencepiece model for the plugin's own
pre-training recipe. fairseq registers all three (`bert_wordpiece` comes from this package),
so one switch covers every reader (GLUE, the SSAF sets, SQuAD).
"""

import argparse
import os

from fairseq.data import encoders

from . import bert_wordpiece_bpe  # noqa: F401  (registers bert_wordpiece)

KINDS = ("gpt2", "bert_wordpiece", "sentencepiece")


def add_tokenizer_args(parser):
    g = parser.add_argument_group("tokenizer (must match the checkpoint)")
    g.add_argument(
        "--bpe", choices=KINDS, required=True, help="gpt2 (RoBERTa), bert_wordpiece (converted BERT) or sentencepiece"
    )
    g.add_argument("--gpt2-encoder-json", help="encoder.json for --bpe gpt2")
    g.add_argument("--gpt2-vocab-bpe", help="vocab.bpe for --bpe gpt2")
    g.add_argument("--bpe-vocab-file", help="WordPiece vocab.txt for --bpe bert_wordpiece")
    g.add_argument("--bpe-cased", action="store_true", help="cased WordPiece (default: lower-case)")
    g.add_argument("--sentencepiece-model", help="sentencepiece .model for --bpe sentencepiece")
    g.add_argument("--srcdict", required=True, help="the checkpoint's dict.txt")
    return g


_NEEDS = {
    "gpt2": ("gpt2_encoder_json", "gpt2_vocab_bpe"),
    "bert_wordpiece": ("bpe_vocab_file",),
    "sentencepiece": ("sentencepiece_model",),
}


def build_tokenizer(args):
    """A fairseq BPE object (encode(str) -> space-separated tokens) from parsed arguments."""
    if args.bpe not in _NEEDS:
        raise ValueError(f"--bpe {args.bpe!r}: expected one of {KINDS}")
    for name in _NEEDS[args.bpe]:
        path = getattr(args, name, None)
        if not path:
            raise ValueError(f"--bpe {args.bpe} needs --{name.replace('_', '-')}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--{name.replace('_', '-')} {path!r} does not exist")
    if not os.path.isfile(args.srcdict):
        raise FileNotFoundError(f"--srcdict {args.srcdict!r} does not exist")
    cfg = argparse.Namespace(
        bpe=args.bpe,
        gpt2_encoder_json=getattr(args, "gpt2_encoder_json", None),
        gpt2_vocab_bpe=getattr(args, "gpt2_vocab_bpe", None),
        bpe_vocab_file=getattr(args, "bpe_vocab_file", None),
        bpe_cased=getattr(args, "bpe_cased", False),
        bpe_strip_accents=None,
        sentencepiece_model=getattr(args, "sentencepiece_model", None),
        sentencepiece_enable_sampling=False,
        sentencepiece_alpha=None,
    )
    return encoders.build_bpe(cfg)


def tokenizer_argv(args):
    """The tokenizer options back as a command-line list (recorded next to the data)."""
    out = ["--bpe", args.bpe]
    for name in _NEEDS[args.bpe]:
        out += [f"--{name.replace('_', '-')}", os.path.abspath(getattr(args, name))]
    if args.bpe == "bert_wordpiece" and args.bpe_cased:
        out.append("--bpe-cased")
    return out


def uses_bert_layout(args):
    """BERT pairs read [CLS] A [SEP] B [SEP]; RoBERTa-style pairs put </s></s> between A and B."""
    return args.bpe == "bert_wordpiece"
