"""Readers that turn raw corpus files into documents (lists of paragraphs).

Supported layouts:
- wikiextractor output: a directory tree of files (AA/wiki_00, optionally .bz2-compressed with
  `-c`) holding either `<doc id=".." url=".." title="..">` ... `</doc>` blocks (the first line of
  the block repeats the title) or, with `--json`, one {"id","url","title","text"} object a line;
- BookCorpus: a directory of plain-text books, one book (= one document) per `.txt` file
  (`.txt.gz` / `.txt.bz2` too). `book_lines="paragraph"` treats every non-empty line as a
  paragraph (BookCorpus' own layout); `"wrapped"` joins hard-wrapped lines up to a blank line.
Readers never raise on file content: problems are counted in `counts` and the line is skipped.
"""

import html
import json
import os
import re
from dataclasses import dataclass, field

from .io_utils import MARKER_SUFFIX, LineReader

WIKIPEDIA = "wikipedia"
BOOKS = "books"
BOOK_SUFFIXES = (".txt", ".txt.gz", ".txt.bz2")

_DOC_OPEN = re.compile(r"^<doc(\s[^>]*)?>\s*$")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class RawDocument:
    source: str
    name: str
    paragraphs: list[str] = field(default_factory=list)
    chars: int = 0

    def add(self, paragraph):
        self.paragraphs.append(paragraph)
        self.chars += len(paragraph)


@dataclass
class InputFile:
    source: str
    path: str
    size: int


def list_inputs(source, directory):
    """All input files of one source under `directory`, sorted (deterministic order)."""
    if not os.path.isdir(directory):
        raise ValueError(f"{source} input {directory!r} is not a directory")
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.endswith(MARKER_SUFFIX):
                continue
            if source == BOOKS and not name.endswith(BOOK_SUFFIXES):
                continue
            path = os.path.join(root, name)
            found.append(InputFile(source, path, os.path.getsize(path)))
    return found


class DocumentReader:
    """Yields RawDocuments from one input file; long documents are cut at `max_doc_chars`."""

    def __init__(self, item, counts, max_line_bytes, max_doc_chars, book_lines="paragraph"):
        if book_lines not in ("paragraph", "wrapped"):
            raise ValueError(f"book_lines must be 'paragraph' or 'wrapped', got {book_lines!r}")
        self.item = item
        self.counts = counts
        self.max_doc_chars = max_doc_chars
        self.book_lines = book_lines
        self.lines = LineReader(item.path, max_line_bytes, counts.dropped_lines)

    @property
    def bytes_read(self):
        return self.lines.bytes_read

    def __iter__(self):
        self.counts.totals["files"] += 1
        if self.item.size == 0:
            self.counts.totals["empty_files"] += 1
        if self.item.source == WIKIPEDIA:
            yield from self._wikiextractor()
        else:
            yield from self._book()

    def _split_if_long(self, doc):
        """Cut a runaway document so no single document has to sit whole in memory."""
        if doc.chars <= self.max_doc_chars:
            return doc, None
        self.counts.totals["documents_cut_at_max_chars"] += 1
        return doc, RawDocument(doc.source, doc.name + "#cont")

    def _wikiextractor(self):
        doc, title, expect_title = None, None, False
        for line in self.lines:
            opened = _DOC_OPEN.match(line)
            if opened:
                if doc is not None:  # previous <doc> never closed
                    self.counts.totals["unterminated_documents"] += 1
                    yield doc
                attrs = {k: html.unescape(v) for k, v in _ATTR.findall(opened.group(1) or "")}
                title = attrs.get("title", "")
                doc = RawDocument(WIKIPEDIA, f"{attrs.get('id', '?')}:{title}")
                expect_title = True
                continue
            if doc is None:
                stripped = line.strip()
                if stripped.startswith("{"):
                    yield from self._json_document(stripped)
                elif stripped:
                    self.counts.dropped_lines["outside_document"] += 1
                continue
            if line.startswith("</doc>"):
                yield doc
                doc = None
                continue
            stripped = line.strip()
            if not stripped:
                continue
            if expect_title:
                expect_title = False
                if html.unescape(stripped) == title.strip():
                    continue  # wikiextractor repeats the title as the first line
            doc.add(stripped)
            doc, rest = self._split_if_long(doc)
            if rest is not None:
                yield doc
                doc = rest
        if doc is not None:
            self.counts.totals["unterminated_documents"] += 1
            yield doc

    def _json_document(self, line):
        try:
            obj = json.loads(line)
            text = obj["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (ValueError, KeyError, TypeError):
            self.counts.dropped_lines["bad_json"] += 1
            return
        doc = RawDocument(WIKIPEDIA, f"{obj.get('id', '?')}:{obj.get('title', '')}")
        for paragraph in text.split("\n"):
            paragraph = paragraph.strip()
            if paragraph:
                doc.add(paragraph)
                doc, rest = self._split_if_long(doc)
                if rest is not None:
                    yield doc
                    doc = rest
        yield doc

    def _book(self):
        name = os.path.relpath(self.item.path)
        doc = RawDocument(BOOKS, name)
        pending, pending_chars = [], 0  # hard-wrapped lines of the current paragraph ("wrapped")
        for line in self.lines:
            stripped = line.strip()
            if self.book_lines == "wrapped":
                if stripped:
                    pending.append(stripped)
                    pending_chars += len(stripped) + 1
                    if pending_chars < self.max_doc_chars:
                        continue
                if not pending:
                    continue
                stripped, pending, pending_chars = " ".join(pending), [], 0
            if not stripped:
                continue
            doc.add(stripped)
            doc, rest = self._split_if_long(doc)
            if rest is not None:
                yield doc
                doc = rest
        if pending:
            doc.add(" ".join(pending))
        yield doc
