"""`--bpe bert_wordpiece`: fairseq BPE entry for BERT WordPiece without `transformers`
(data/wordpiece.py: BERT's tokenizer built on Hugging Face `tokenizers`).

Usage: `--bpe bert_wordpiece --bpe-vocab-file OUT_DIR/vocab.txt [--bpe-cased]`.
BERT's special tokens in the text come out under fairseq's names ([CLS] -> <s>,
[SEP] -> </s>, [PAD] -> <pad>, [UNK] -> <unk>, [MASK] -> <mask>), because a converted
checkpoint's dictionary holds them there (see fairseq_sparse/convert/bert.py).
"""

from dataclasses import dataclass, field
from typing import Optional

from fairseq.data.encoders import register_bpe
from fairseq.dataclass import FairseqDataclass

from .wordpiece import CONTINUATION, WordPieceTokenizer, detokenize

BERT_TO_FAIRSEQ = {"[CLS]": "<s>", "[SEP]": "</s>", "[PAD]": "<pad>", "[UNK]": "<unk>", "[MASK]": "<mask>"}
FAIRSEQ_TO_BERT = {v: k for k, v in BERT_TO_FAIRSEQ.items()}


@dataclass
class BertWordPieceConfig(FairseqDataclass):
    bpe_vocab_file: Optional[str] = field(
        default=None, metadata={"help": "BERT vocab.txt (the converter writes one next to model.pt)"}
    )
    bpe_cased: bool = field(default=False, metadata={"help": "keep case (for cased BERT checkpoints)"})
    bpe_strip_accents: Optional[bool] = field(
        default=None, metadata={"help": "strip accents (default: only when lower-casing, as BERT does)"}
    )


@register_bpe("bert_wordpiece", dataclass=BertWordPieceConfig)
class BertWordPieceBPE:
    def __init__(self, cfg):
        if not cfg.bpe_vocab_file:
            raise ValueError("--bpe bert_wordpiece needs --bpe-vocab-file (a BERT vocab.txt)")
        self.tokenizer = WordPieceTokenizer(
            cfg.bpe_vocab_file, lowercase=not cfg.bpe_cased, strip_accents=cfg.bpe_strip_accents
        )

    def encode(self, x: str) -> str:
        return " ".join(BERT_TO_FAIRSEQ.get(t, t) for t in self.tokenizer.tokenize(x))

    def encode_with_offsets(self, x: str):
        """[(fairseq token, start, end)] with character spans of `x` (used by SQuAD)."""
        return [(BERT_TO_FAIRSEQ.get(t, t), s, e) for t, s, e in self.tokenizer.tokenize_with_offsets(x)]

    def decode(self, x: str) -> str:
        return detokenize([FAIRSEQ_TO_BERT.get(t, t) for t in x.split()])

    def is_beginning_of_word(self, x: str) -> bool:
        return not x.startswith(CONTINUATION)
