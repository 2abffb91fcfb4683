"""Labelled examples from one's own TSV/CSV files: one or two text columns and a label column.

Columns are chosen by 0-based index (negative counts from the end) or, with a header row, by
name. The delimiter follows the file name (.tsv: tab, .csv: comma) unless given.
"""
import csv
import os

from ..data.sentence_prediction_data import Example


class TableError(ValueError):
    """A file that does not match the requested columns; the message names file, row and value."""


def _delimiter(path, delimiter):
    if delimiter:
        return delimiter
    ext = os.path.splitext(path)[1].lower()
    if ext in (".tsv", ".tab", ".txt"):
        return "\t"
    if ext == ".csv":
        return ","
    raise TableError(f"{path}: cannot tell the delimiter from the extension {ext!r}; "
                     "use .tsv or .csv, or pass --delimiter")


def _column_index(selector, header, width, path):
    """A column selector ('2', '-1' or a header name) -> index into a row of `width` cells."""
    try:
        i = int(selector)
    except ValueError:
        if header is None:
            raise TableError(f"{path}: column {selector!r} is a name, but the file has no header row "
                             "(pass --header, or give 0-based column numbers)") from None
        if selector not in header:
            raise TableError(f"{path}: no column named {selector!r}; the header has {header}") from None
        return header.index(selector)
    if not -width <= i < width:
        raise TableError(f"{path}: column {i} is out of range for rows of {width} cells")
    return i % width


def read_labelled_file(path, text_columns=("0",), label_column="-1", header=False, delimiter=None):
    """[Example(text_a, text_b, label, uid)] from a TSV/CSV file; uid = '<file>:<line>'."""
    if not 1 <= len(text_columns) <= 2:
        raise TableError(f"give one or two text columns, got {list(text_columns)}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"labelled file not found: {path!r}")
    sep = _delimiter(path, delimiter)
    with open(path, newline="", encoding="utf-8") as f:
        # TSV files are often written without quoting; a stray quote must not swallow lines
        rows = list(csv.reader(f, delimiter=sep, quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE))
    names = [c.strip() for c in rows.pop(0)] if header and rows else None
    rows = [(n, r) for n, r in enumerate(rows, start=2 if header else 1) if any(cell.strip() for cell in r)]
    if not rows:
        raise TableError(f"{path}: no data rows")
    width = len(rows[0][1])
    texts = [_column_index(c, names, width, path) for c in text_columns]
    label = _column_index(label_column, names, width, path)
    if label in texts:
        raise TableError(f"{path}: the label column {label_column!r} is also a text column")
    base = os.path.basename(path)
    examples = []
    for line, row in rows:
        if len(row) != width:
            raise TableError(f"{path}, line {line}: {len(row)} cells, expected {width} like the first row")
        values = [row[i].strip() for i in texts]
        if not values[0] or row[label].strip() == "":
            raise TableError(f"{path}, line {line}: empty text or label")
        examples.append(Example(values[0], values[1] if len(values) == 2 else None, row[label].strip(), f"{base}:{line}"))
    return examples


def label_names(train, others):
    """Class names in index order (sorted train labels); a label unseen in training is an error."""
    names = sorted({ex.label for ex in train})
    if len(names) < 2:
        raise TableError(f"the training file has {len(names)} distinct label(s) {names}; classification needs >= 2")
    for split, examples in others.items():
        unseen = sorted({ex.label for ex in examples} - set(names))
        if unseen:
            raise TableError(f"{split} labels {unseen} never occur in the training file (labels: {names})")
    return names
