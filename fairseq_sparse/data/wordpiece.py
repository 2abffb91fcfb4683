"""BERT's WordPiece tokenizer in plain Python, with character offsets.

fairseq's `--bpe bert` wraps `transformers.BertTokenizer`, a large dependency that is absent
on offline machines. This re-implements the two published stages (the "basic" tokenizer:
text cleaning, CJK splitting, optional lower-casing and accent stripping, punctuation
splitting; then greedy longest-match-first WordPiece with `##` continuations) and keeps, for
every piece, the span of the original text it came from, which SQuAD needs to map predicted
token spans back to answer text.
"""
import os
import re
import unicodedata

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CONTINUATION = "##"

# Code-point blocks BERT treats as CJK ideographs (each becomes its own word).
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


# Plain ASCII text without control characters: words are alphanumeric runs and every other
# printable character is punctuation under BERT's rule, so a regex gives the pre-tokens.
_ASCII_PRETOKEN = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACE_SEPARATED = re.compile(r"[^ \t\n\r]+")
_CACHE_LIMIT = 1 << 20


def is_whitespace(ch):
    """Space separators plus line/paragraph separators (as Hugging Face's Rust tokenizer)."""
    return ch in " \t\n\r" or unicodedata.category(ch) in ("Zs", "Zl", "Zp")


def is_control(ch):
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def is_punctuation(ch):
    """Unicode punctuation plus every non-alphanumeric printable ASCII symbol (BERT's rule)."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(ch):
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


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

    `lowercase` and `strip_accents` follow Hugging Face's BertTokenizer semantics:
    strip_accents=None means "strip when lower-casing".
    """

    def __init__(
        self,
        vocab,
        lowercase=True,
        strip_accents=None,
        tokenize_chinese_chars=True,
        unk_token="[UNK]",
        max_chars_per_word=100,
        never_split=SPECIAL_TOKENS,
    ):
        tokens = load_vocab(vocab) if isinstance(vocab, (str, os.PathLike)) else list(vocab)
        self.vocab = {tok: i for i, tok in enumerate(tokens)}
        if unk_token not in self.vocab:
            raise ValueError(f"unknown-word token {unk_token!r} is not in the WordPiece vocab")
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.unk_token = unk_token
        self.max_chars_per_word = max_chars_per_word
        self.never_split = set(never_split or ())
        self._pieces = {}  # pre-token -> WordPiece split (text repeats words a lot)
        specials = sorted((t for t in self.never_split if t), key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, specials))) if specials else None

    # -- basic tokenizer ------------------------------------------------------------------
    def _raw_words(self, text, base=0):
        """Cleaned, whitespace/CJK-delimited words as lists of (char, index in the text + base)."""
        words, current = [], []
        for i, ch in enumerate(text, start=base):
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or is_control(ch):
                continue
            if is_whitespace(ch):
                if current:
                    words.append(current)
                    current = []
            elif self.tokenize_chinese_chars and is_cjk(ch):
                if current:
                    words.append(current)
                    current = []
                words.append([(ch, i)])
            else:
                current.append((ch, i))
        if current:
            words.append(current)
        return words

    def _normalize(self, word):
        """Lower-case / strip accents, keeping each output char's original index."""
        if self.lowercase:  # per character, without context (no final sigma), as BERT's tokenizers do
            word = [(lc, i) for c, i in word for lc in c.lower()]
        if self.strip_accents:
            word = [
                (d, i)
                for c, i in word
                for d in unicodedata.normalize("NFD", c)
                if unicodedata.category(d) != "Mn"
            ]
        return word

    def _pretokens(self, text):
        """Pre-tokens as (string, original index of each char, end of the last char).

        Space-separated chunks of plain ASCII take a regex shortcut; any other chunk goes
        through the character-level rules. Both give the same result on ASCII.
        """
        out = []
        for chunk, base in self._split_special(text):
            if chunk in self.never_split:
                out.append((chunk, range(base, base + len(chunk)), base + len(chunk)))
            elif chunk.isascii() and not _ASCII_CONTROL.search(chunk):
                out.extend(
                    (w.group().lower() if self.lowercase else w.group(), range(base + w.start(), base + w.end()),
                     base + w.end())
                    for w in _ASCII_PRETOKEN.finditer(chunk)
                )
            else:
                out.extend(self._pretokens_by_char(chunk, base))
        return out

    def _split_special(self, text):
        """(chunk, offset) of space-separated chunks, special tokens ([MASK] ...) cut out wherever they occur."""
        for m in _SPACE_SEPARATED.finditer(text):
            chunk, base = m.group(), m.start()
            if self._special_re is None or "[" not in chunk:
                yield chunk, base
                continue
            pos = 0
            for sm in self._special_re.finditer(chunk):
                if sm.start() > pos:
                    yield chunk[pos:sm.start()], base + pos
                yield sm.group(), base + sm.start()
                pos = sm.end()
            if pos < len(chunk):
                yield chunk[pos:], base + pos

    def _pretokens_by_char(self, text, base):
        out = []
        for word in self._raw_words(text, base):
            raw = "".join(c for c, _ in word)
            if raw in self.never_split:
                out.append((raw, [i for _, i in word], word[-1][1] + 1))
                continue
            piece = []
            for ch, i in self._normalize(word):
                if is_punctuation(ch):
                    if piece:
                        out.append(_pretoken(piece))
                        piece = []
                    out.append((ch, [i], i + 1))
                else:
                    piece.append((ch, i))
            if piece:
                out.append(_pretoken(piece))
        return out

    def basic_tokenize_with_offsets(self, text):
        """Pre-tokens (before WordPiece) as (string, start, end) in `text` coordinates."""
        return [(s, idx[0], end) for s, idx, end in self._pretokens(text)]

    # -- WordPiece ----------------------------------------------------------------------
    def wordpiece(self, word):
        """Greedy longest-match-first split of one pre-token; [UNK] if any part is unknown."""
        pieces = self._pieces.get(word)
        if pieces is None:
            pieces = self._wordpiece(word)
            if len(self._pieces) < _CACHE_LIMIT:
                self._pieces[word] = pieces
        return pieces

    def _wordpiece(self, word):
        if word in self.never_split and word in self.vocab:
            return [word]
        if len(word) > self.max_chars_per_word:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                cand = word[start:end] if start == 0 else CONTINUATION + word[start:end]
                if cand in self.vocab:
                    found = cand
                    break
                end -= 1
            if found is None:
                return [self.unk_token]
            pieces.append(found)
            start = end
        return pieces

    def tokenize_with_offsets(self, text):
        """WordPiece tokens with the (start, end) span of `text` each one covers."""
        out = []
        for word, idx, end in self._pretokens(text):
            pieces = self.wordpiece(word)
            if pieces == [self.unk_token] or len(pieces) == 1:
                out.append((pieces[0], idx[0], end))
                continue
            pos = 0
            for k, piece in enumerate(pieces):
                n = len(piece) - (len(CONTINUATION) if k > 0 else 0)
                stop = end if pos + n >= len(word) else idx[pos + n - 1] + 1
                out.append((piece, idx[pos], stop))
                pos += n
        return out

    def tokenize(self, text):
        return [tok for tok, _, _ in self.tokenize_with_offsets(text)]


def _pretoken(chars):
    """(string, original indices, end) of a run of (char, original index) pairs."""
    return "".join(c for c, _ in chars), [i for _, i in chars], chars[-1][1] + 1


def detokenize(tokens):
    """Join WordPiece tokens back into text (continuations glued to their word)."""
    text = " ".join(tokens)
    return text.replace(" " + CONTINUATION, "").replace(CONTINUATION, "")
