"""Rule-based English sentence splitting (no model download, deterministic, fast enough).

fairseq's masked_lm with `--sample-break-mode complete_doc` packs whole sentences (lines) into
blocks, so the corpus is written one sentence per line. A boundary is a run of . ! ? (plus
closing quotes/brackets) followed by whitespace and an upper-case letter, a digit or an opening
quote/bracket -- unless the word before a single period is a known abbreviation ("Dr.", "e.g.",
"Jan.") or an initial ("J."), or is "No."/"Fig."/"p."-like and a number follows.
"""

import re

# Lower-cased, without the final period. Mid-sentence almost always (so never a boundary).
ABBREVIATIONS = frozenset(
    """mr mrs ms messrs mme mlle dr prof sr jr st mt ft gen col lt sgt capt cmdr adm gov sen rep rev
    hon pres supt insp e.g i.e cf viz al vs approx dept univ inc ltd co corp bros assn est jan feb mar
    apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun u.s u.k u.n a.m p.m""".split()
)
# Abbreviations that are ordinary words at the end of a sentence; mid-sentence only before a number.
NUMBERED_ABBREVIATIONS = frozenset("no nos fig figs vol vols p pp ch sec art c ca op".split())

_CANDIDATE = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*(?=\s)")
_OPENERS = "\"'\u201c\u2018\u00ab(["
_WORD_BEFORE = re.compile(r"(\S+)$")


def _starts_sentence(text, pos):
    """Whether the first non-space character at or after `pos` can begin a sentence."""
    n = len(text)
    while pos < n and text[pos].isspace():
        pos += 1
    while pos < n and text[pos] in _OPENERS:
        pos += 1
    if pos >= n:
        return False, pos
    ch = text[pos]
    return (ch.isupper() or ch.isdigit()), pos


def _is_abbreviation(text, punct_start, next_pos):
    """True if the single period at `punct_start` closes an abbreviation, not a sentence."""
    m = _WORD_BEFORE.search(text, 0, punct_start + 1)
    if m is None:
        return False
    word = m.group(1).lstrip(_OPENERS)[:-1].lower()  # drop the period itself
    if not word:
        return False
    if word in ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isalpha():  # an initial: "J. R. R. Tolkien"
        return True
    if word in NUMBERED_ABBREVIATIONS:
        return next_pos < len(text) and text[next_pos].isdigit()
    return False


def split_sentences(text):
    """Split one paragraph into sentences (stripped, non-empty)."""
    sentences, start = [], 0
    for m in _CANDIDATE.finditer(text):
        ok, next_pos = _starts_sentence(text, m.end())
        if not ok:
            continue
        punct = m.group(0).rstrip("\"'\u201d\u2019\u00bb)]")
        if punct == "." and _is_abbreviation(text, m.start(), next_pos):
            continue
        piece = text[start : m.end()].strip()
        if piece:
            sentences.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def chunk_words(sentence, max_words):
    """A run-on "sentence" (a table, a list without punctuation) as pieces of <= max_words words."""
    words = sentence.split()
    if len(words) <= max_words:
        return [sentence]
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]
