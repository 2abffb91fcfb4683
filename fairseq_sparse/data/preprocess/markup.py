"""Text clean-up of one paragraph, and the document fingerprint used for de-duplication.

wikiextractor removes most MediaWiki markup but leaves residue: HTML entities and tags, unexpanded
`{{templates}}`, `[[links]]`, `formula_1`/`codice_1` placeholders, and parentheses emptied by
removed templates ("born () in"). Books carry stray control characters and odd spacing. Only
what cannot be meant as text is removed.
"""

import hashlib
import html
import re

_REF = re.compile(r"<ref[^<>]{0,300}?(?:/>|>.{0,2000}?</ref\s*>)", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]{0,300})?/?>")
_TEMPLATE = re.compile(r"\{\{[^{}]{0,2000}\}\}")
_LINK = re.compile(r"\[\[(?:[^\[\]|]{0,300}\|)?([^\[\]]{0,300})\]\]")
_EXTERNAL_LINK = re.compile(r"\[(?:https?|ftp)://[^\s\]]+(?:\s([^\]]{0,300}))?\]")
_PLACEHOLDER = re.compile(r"\b(?:formula|codice)_\d+\b")
_EMPTY_BRACKETS = re.compile(r"[(\[]\s*(?:[,;:.\u2013\u2014-]\s*)*[)\]]")
_LEADING_PUNCT_IN_PAREN = re.compile(r"\(\s*[,;:]\s*")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)\]])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[])\s+")
_NOT_ALNUM = re.compile(r"[\W_]+")


def clean_wiki_markup(line):
    """Remove wikiextractor residue from one paragraph (idempotent)."""
    if "&" in line:
        line = html.unescape(line)
    if "<" in line:
        line = _REF.sub(" ", line)
        line = _TAG.sub(" ", line)
    if "{{" in line:
        for _ in range(5):  # innermost templates first; nesting rarely goes deeper
            line, n = _TEMPLATE.subn(" ", line)
            if not n:
                break
    if "[" in line:
        line = _LINK.sub(r"\1", line)
        line = _EXTERNAL_LINK.sub(lambda m: m.group(1) or " ", line)
    line = _PLACEHOLDER.sub(" ", line)
    return clean_text(line)


def clean_text(line):
    """Whitespace and punctuation-spacing normalisation shared by every source."""
    line = _CONTROL.sub("", line)
    line = _SPACES.sub(" ", line)
    line = _EMPTY_BRACKETS.sub("", line)
    line = _LEADING_PUNCT_IN_PAREN.sub("(", line)
    line = _SPACE_AFTER_OPEN.sub(r"\1", line)
    line = _SPACE_BEFORE_PUNCT.sub(r"\1", line)
    return _SPACES.sub(" ", line).strip()


def document_hash(sentences):
    """64-bit fingerprint of a document that ignores case, punctuation and spacing.

    Two copies of an article that differ only in markup residue or line wrapping collide, so
    the second one is dropped as a duplicate.
    """
    h = hashlib.blake2b(digest_size=8)
    for s in sentences:
        h.update(_NOT_ALNUM.sub(" ", s.lower()).strip().encode("utf-8"))
        h.update(b" ")
    return int.from_bytes(h.digest(), "little")
