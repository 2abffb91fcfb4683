"""Labelled examples from one's own TSV/CSV files: one or two text columns and a label column.

Files as users have them: a header row without --header (taken as one when it looks like one,
refused when it is unclear), a UTF-8 byte-order mark, another encoding (--encoding), fields
longer than the csv module's 131,072-character default, blank lines. A file that cannot be read
as asked is a TableError naming the file, the line and the fix, raised before anything is written.

Columns are chosen by 0-based index (negative counts from the end) or, with a header row, by
name. The delimiter follows the file name (.tsv: tab, .csv: comma) unless given.
"""

import csv
import io
import os
from typing import NamedTuple

from ..data.sentence_prediction_data import Example
from ..data.text_file import TextFileError, decode_file

FIELD_LIMIT = 2**31 - 1  # the csv default (131,072 characters) cuts long documents
_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "bar"}


class TableError(TextFileError):
    """A file that does not match the requested columns; the message names file, line and fix."""


class Table(NamedTuple):
    examples: list[Example]
    header: list[str] | None  # the column names when the file had a header row, else None


def _name(sep):
    return _NAMES.get(sep, repr(sep))


def _delimiter(path, delimiter):
    if delimiter:
        return delimiter
    ext = os.path.splitext(path)[1].lower()
    if ext in (".tsv", ".tab", ".txt"):
        return "\t"
    if ext == ".csv":
        return ","
    raise TableError(
        f"{path}: cannot tell the delimiter from the extension {ext!r}; use .tsv or .csv, or pass --delimiter"
    )


def _decode(path, encoding):
    """The file's text without a byte-order mark (data/text_file.py); errors as TableError."""
    try:
        return decode_file(path, encoding)
    except TextFileError as e:
        raise TableError(str(e)) from None


def _rows(path, text, sep):
    """[(line where the row starts, cells)] of the non-blank rows."""
    # TSV files are often written without quoting; a stray quote must not swallow lines
    quoting = csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=quoting, strict=True)
    rows, start = [], 1
    previous = csv.field_size_limit(FIELD_LIMIT)
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as e:
        raise TableError(
            f"{path}, line {start}: {e}; check the quoting there (a field with a {_name(sep)}, "
            'quote or line break goes in double quotes, a quote inside it doubled: "")'
        ) from None
    finally:
        csv.field_size_limit(previous)
    return rows


def _check_shape(path, rows, sep):
    """All rows as wide as the first, and at least two cells (a text and a label)."""
    line, first = rows[0]
    other = "," if sep != "," else "\t"
    widths = {len(sep.join(cells).split(other)) for _, cells in rows}  # each row split the other way
    hint = (
        f"; is the file {_name(other)}-separated? pass --delimiter {other!r}" if min(widths) == max(widths) > 1 else ""
    )
    if all(len(cells) == 1 for _, cells in rows):
        raise TableError(
            f"{path}: no label column: every row is one cell with no {_name(sep)} "
            f"(each row needs a text and a label){hint}"
        )
    for n, cells in rows[1:]:
        if len(cells) != len(first):
            raise TableError(
                f"{path}, line {n}: {len(cells)} cells, expected {len(first)} like line {line}; "
                f"a {_name(sep)} inside a text? quote that field"
                f"{' (or remove the tab)' if sep == chr(9) else ''}{hint}"
            )


def _column_index(selector, header, width, path, role):
    """A column selector ('2', '-1' or a header name) -> index into a row of `width` cells."""
    try:
        i = int(selector)
    except ValueError:
        if header is None:
            raise TableError(
                f"{path}: {role} column {selector!r} is a name, but the file has no header row "
                "(pass --header, or give 0-based column numbers)"
            ) from None
        if selector not in header:
            raise TableError(f"{path}: no {role} column named {selector!r}; the header has {header}") from None
        return header.index(selector)
    if not -width <= i < width:
        raise TableError(f"{path}: {role} column {i} is out of range for rows of {width} cells")
    return i % width


def _is_header(path, rows, label, known_labels, header_like):
    """Whether the first row holds column names, for a file read without --header / --no-header.

    A header's label cell is not a label: it occurs in no other row (nor among the training
    labels), while the other rows' labels repeat. A row equal to the training file's header is one.
    When neither holds clearly, refuse rather than guess. The caller reports the row it skipped.
    """
    first = [c.strip() for c in rows[0][1]]
    if len(rows) == 1:
        return False
    if header_like is not None and first == header_like:
        return True
    others = [cells[label].strip() for _, cells in rows[1:]]
    if first[label] in set(others) | set(known_labels or ()):
        return False
    if known_labels is not None:  # unseen labels below the first row too: a label error, reported as such
        return set(others) <= set(known_labels)
    if len(set(others)) <= len(others) / 2:
        return True
    raise TableError(
        f"{path}: cannot tell whether line {rows[0][0]} {first} is a header row: its label "
        f"{first[label]!r} occurs in no other row; pass --header if it names the columns, "
        "--no-header if it is an example"
    )


def read_labelled_file(
    path,
    text_columns=("0",),
    label_column="-1",
    header=None,
    delimiter=None,
    encoding="utf-8",
    known_labels=None,
    header_like=None,
):
    """Table([Example(text_a, text_b, label, uid '<file>:<line>')], header) from a TSV/CSV file.

    header: True / False, or None to detect it (_is_header); column names imply a header.
    known_labels, header_like: the training file's labels and header row, for the other files.
    """
    if not 1 <= len(text_columns) <= 2:
        raise TableError(f"give one or two text columns, got {list(text_columns)}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"labelled file not found: {path!r}")
    sep = _delimiter(path, delimiter)
    rows = _rows(path, _decode(path, encoding), sep)
    if not rows:
        raise TableError(f"{path}: no data rows")
    _check_shape(path, rows, sep)
    width = len(rows[0][1])
    by_name = not all(_is_int(c) for c in [*text_columns, label_column])
    if header is None:
        header = by_name or _is_header(
            path, rows, _column_index(label_column, None, width, path, "label"), known_labels, header_like
        )
    names = [c.strip() for c in rows.pop(0)[1]] if header else None
    if not rows:
        raise TableError(f"{path}: no data rows below the header")
    texts = [_column_index(c, names, width, path, "text") for c in text_columns]
    label = _column_index(label_column, names, width, path, "label")
    if label in texts:
        raise TableError(
            f"{path}: the label column {label_column!r} is also a text column; pass --label-column and --text-columns"
        )
    base = os.path.basename(path)
    examples = []
    for line, row in rows:
        values = [row[i].strip() for i in texts]
        if not values[0] or row[label].strip() == "":
            raise TableError(f"{path}, line {line}: empty text or label")
        text_b = values[1] if len(values) == 2 else None
        examples.append(Example(values[0], text_b, row[label].strip(), f"{base}:{line}"))
    return Table(examples, names)


def _is_int(selector):
    try:
        int(selector)
    except ValueError:
        return False
    return True


def label_names(train, others):
    """Class names in index order (sorted train labels); a label unseen in training is an error."""
    names = sorted({ex.label for ex in train})
    if len(names) < 2:
        raise TableError(f"the training file has {len(names)} distinct label(s) {names}; classification needs >= 2")
    for split, examples in others.items():
        unseen = sorted({ex.label for ex in examples} - set(names))
        if unseen:
            first = next(ex.uid for ex in examples if ex.label in unseen)
            raise TableError(
                f"{split} labels {unseen} never occur in the training file (labels: {names}); first at {first}"
            )
    return names
