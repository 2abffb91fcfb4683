"""BERT's WordPiece tokenizer from a vocab.txt, with character offsets, on Hugging Face `tokenizers`.

fairseq's `--bpe bert` wraps `transformers.BertTokenizer`, a large dependency. This builds the same
pipeline from the small Rust `tokenizers` wheel: BERT's normaliser (text cleaning, CJK splitting,
optional lower-casing and accent stripping), BERT's pre-tokeniser (whitespace and punctuation),
then greedy longest-match-first WordPiece with `##` continuations; the special tokens ([MASK] ...)
are kept whole wherever they occur. Every piece keeps the span of the original text it came from,
which SQuAD needs to map predicted token spans back to answer text.
"""

import os

from tokenizers import PreTokenizedString, Tokenizer
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CONTINUATION = "##"


def load_vocab(path):
    """Read a WordPiece vocab.txt (one token per line, line number = id) into a list."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"WordPiece vocab file not found: {path!r} (expected a BERT vocab.txt)")
    with open(path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n").rstrip("\r") for line in f]
    while tokens and tokens[-1] == "":
        tokens.pop()
    if not tokens:
        raise ValueError(f"WordPiece vocab file {path!r} is empty")
    return tokens


class WordPieceTokenizer:
    """Text -> WordPiece tokens (optionally with (start, end) character offsets).

    `vocab` is a vocab.txt path or the token list. `lowercase` and `strip_accents` follow Hugging
    Face's BertTokenizer: strip_accents=None means "strip when lower-casing".
    """

    def __init__(self, vocab, lowercase=True, strip_accents=None, unk_token="[UNK]", max_chars_per_word=100):
        tokens = load_vocab(vocab) if isinstance(vocab, (str, os.PathLike)) else list(vocab)
        ids = {tok: i for i, tok in enumerate(tokens)}
        if unk_token not in ids:
            raise ValueError(f"unknown-word token {unk_token!r} is not in the WordPiece vocab")
        self.normalizer = BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
        )
        self.pre_tokenizer = BertPreTokenizer()
        self.tokenizer = Tokenizer(
            WordPiece(
                ids,
                unk_token=unk_token,
                continuing_subword_prefix=CONTINUATION,
                max_input_chars_per_word=max_chars_per_word,
            )
        )
        self.tokenizer.normalizer = self.normalizer
        self.tokenizer.pre_tokenizer = self.pre_tokenizer
        self.tokenizer.add_special_tokens([t for t in SPECIAL_TOKENS if t in ids])

    def tokenize_with_offsets(self, text):
        """WordPiece tokens with the (start, end) span of `text` each one covers."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        return [(tok, start, end) for tok, (start, end) in zip(enc.tokens, enc.offsets)]

    def tokenize(self, text):
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def basic_tokenize_with_offsets(self, text):
        """Pre-tokens (normalised words before WordPiece) as (string, start, end) in `text` coordinates."""
        return pre_tokenize_with_offsets(text, self.normalizer, self.pre_tokenizer)


def pre_tokenize_with_offsets(text, normalizer, pre_tokenizer):
    """(normalised word, start, end) per pre-token; start/end are character offsets into `text` itself.

    Offsets refer to the original text, not the normalised one, so callers can cut answer spans
    out of what the user wrote.
    """
    words = PreTokenizedString(text)
    words.normalize(normalizer.normalize)
    pre_tokenizer.pre_tokenize(words)
    splits = words.get_splits(offset_referential="original", offset_type="char")
    return [(w, start, end) for w, (start, end), _ in splits]


def detokenize(tokens):
    """Join WordPiece tokens back into text (continuations glued to their word)."""
    text = " ".join(tokens)
    return text.replace(" " + CONTINUATION, "").replace(CONTINUATION, "")
