"""Users' text files read one way: a byte-order mark stripped, and an undecodable byte reported with
its file, line and byte and the fix (--encoding), so every reader of a user's file (own TSV/CSV
tables, text with one paragraph per line) fails the same clear way instead of with a bare codec error.
"""

import codecs


class TextFileError(ValueError):
    """A user's file that cannot be read as asked; the message names the file, the line and the fix."""


def decode_file(path, encoding="utf-8"):
    """The file's text without a byte-order mark."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise TextFileError(
            f"unknown --encoding {encoding!r}; expected a Python codec such as utf-8, cp1252, latin-1"
        ) from None
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - raw.rfind(b"\n", 0, e.start)
        raise TextFileError(
            f"{path}, line {line}, byte {column}: {raw[e.start : e.start + 1]!r} is not {encoding} "
            f"({e.reason}); pass the file's encoding, e.g. --encoding cp1252 (Windows) or "
            "--encoding latin-1, or save the file as UTF-8"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_paragraphs(path, encoding="utf-8"):
    """The non-blank lines of a text with one paragraph per line, stripped; an error when there are none."""
    paragraphs = [line.strip() for line in decode_file(path, encoding).splitlines() if line.strip()]
    if not paragraphs:
        raise TextFileError(f"{path} holds no text; expected English text with one paragraph per line")
    return paragraphs
