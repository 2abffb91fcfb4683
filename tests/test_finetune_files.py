"""fairseq-sparse-finetune on the files users really have (issue 18 item 4): header rows, BOMs,
other encodings, huge fields, a missing label column, tabs vs commas, blank lines, ragged rows.

Each bad file is an error naming the file, the line and the fix, raised before anything is
written; each recoverable one reads right.
"""

import csv

import pytest

from fairseq_sparse.finetune.data import read_splits
from fairseq_sparse.finetune.job import FinetuneJob
from fairseq_sparse.finetune.tabular import FIELD_LIMIT, TableError, read_labelled_file

ROWS = "the cat sat\tpos\na dull film\tneg\ngreat fun\tpos\nboring\tneg\nlovely\tpos\n"


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


def _read(path, **kwargs):
    return [(e.text_a, e.text_b, e.label, e.uid) for e in read_labelled_file(path, **kwargs).examples]


def test_header_row_without_header_flag_is_detected_in_every_file(tmp_path):
    train = _write(tmp_path / "train.tsv", "text\tlabel\n" + ROWS)
    dev = _write(tmp_path / "dev.tsv", "text\tlabel\nnice\tpos\n")  # too short to tell alone: train's header
    job = FinetuneJob(train=train, valid=dev, checkpoint="-", out_dir="-")
    splits, names, headers = read_splits(job)
    assert names == ["neg", "pos"]  # no third class 'label'
    assert [e.text_a for e in splits["train"]][:1] == ["the cat sat"] and len(splits["train"]) == 5
    assert [(e.text_a, e.label, e.uid) for e in splits["valid"]] == [("nice", "pos", "dev.tsv:2")]
    assert headers == {"train": ["text", "label"], "valid": ["text", "label"]}


def test_no_header_is_read_as_data_and_explicit_flags_win(tmp_path):
    path = _write(tmp_path / "a.tsv", ROWS)
    assert len(read_labelled_file(path).examples) == 5  # 'pos' occurs below: line 1 is an example
    odd = _write(tmp_path / "b.tsv", "rare one\todd\n" + ROWS)  # looks like a header ...
    assert read_labelled_file(odd).header == ["rare one", "odd"]
    assert _read(odd, header=False)[0] == ("rare one", None, "odd", "b.tsv:1")  # ... unless --no-header
    assert read_labelled_file(path, header=True).header == ["the cat sat", "pos"]


def test_unclear_header_is_refused_with_the_fix(tmp_path):
    path = _write(tmp_path / "a.tsv", "text\tlabel\nx\t1\ny\t2\nz\t3\n")  # labels that never repeat
    with pytest.raises(
        TableError,
        match=r"a\.tsv: cannot tell whether line 1 \['text', 'label'\] is a header row"
        r".*pass --header .*--no-header",
    ):
        read_labelled_file(path)


@pytest.mark.parametrize(
    "train_header,dev,unseen",
    [
        ("", "meh\tneutral\nnice\tpos\nugh\tangry\n", r"\['angry', 'neutral'\] .*first at d\.tsv:1"),  # no header
        ("text\tlabel\n", "text\tlabel\nnice\tpos\nmeh\tneutral\n", r"\['neutral'\] .*first at d\.tsv:3"),  # train's
    ],
)
def test_dev_file_with_an_unseen_label_is_still_an_error(tmp_path, train_header, dev, unseen):
    train = _write(tmp_path / "t.tsv", train_header + ROWS)
    dev = _write(tmp_path / "d.tsv", dev)
    with pytest.raises(TableError, match=r"valid labels " + unseen):
        read_splits(FinetuneJob(train=train, valid=dev, checkpoint="-", out_dir="-"))


def test_utf8_bom_is_dropped_so_the_first_column_has_its_name(tmp_path):
    path = _write(tmp_path / "a.csv", b"\xef\xbb\xbftext,label\n" + b"caf\xc3\xa9,pos\nok,neg\n")
    assert _read(path, text_columns=["text"], label_column="label") == [
        ("café", None, "pos", "a.csv:2"),
        ("ok", None, "neg", "a.csv:3"),
    ]


def test_decoding_error_names_file_line_and_encoding_option(tmp_path):
    path = _write(tmp_path / "latin.tsv", "good\tpos\ncaf\u00e9 au lait\tneg\n", encoding="cp1252")
    with pytest.raises(TableError, match=r"latin\.tsv, line 2, byte 4: b'\\xe9' is not utf-8 .*--encoding cp1252"):
        read_labelled_file(path, header=False)
    assert _read(path, header=False, encoding="cp1252")[1][0] == "café au lait"
    with pytest.raises(TableError, match="unknown --encoding 'utf-9'"):
        read_labelled_file(path, encoding="utf-9")


def test_fields_over_the_csv_default_limit_are_read_and_the_limit_restored(tmp_path):
    long_text = "word " * 40_000  # 200,000 characters: over csv's default 131,072
    path = _write(tmp_path / "long.csv", f'"{long_text}",pos\nshort,neg\n')
    before = csv.field_size_limit()
    assert _read(path, header=False)[0][0] == long_text.strip()
    assert csv.field_size_limit() == before < FIELD_LIMIT


def test_csv_quoting_error_names_the_line(tmp_path):
    path = _write(tmp_path / "q.csv", 'a,pos\nb,neg\n"never closed,pos\n')
    with pytest.raises(TableError, match=r"q\.csv, line 3: unexpected end of data; check the quoting"):
        read_labelled_file(path, header=False)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("one.tsv", "just text\nmore text\n", r"one\.tsv: no label column: every row is one cell with no tab"),
        (
            "tabs.csv",
            "a b\tpos\nc\tneg\n",
            r"tabs\.csv: no label column: .*is the file tab-separated\? pass --delimiter",
        ),
        ("commas.tsv", "a,pos\nc,neg\n", r"commas\.tsv: no label column: .*comma-separated\? pass --delimiter ','"),
    ],
)
def test_missing_label_column_and_wrong_delimiter_are_said_so(tmp_path, name, content, match):
    with pytest.raises(TableError, match=match):
        read_labelled_file(_write(tmp_path / name, content))


def test_label_column_named_but_absent(tmp_path):
    path = _write(tmp_path / "h.tsv", "text\ttopic\na\tx\n")
    with pytest.raises(TableError, match=r"h\.tsv: no label column named 'label'; the header has \['text', 'topic'\]"):
        read_labelled_file(path, text_columns=["text"], label_column="label")


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    path = _write(tmp_path / "b.tsv", "\n" + ROWS.replace("\n", "\n\n", 1) + "\n\t\n")
    got = _read(path)
    assert len(got) == 5 and got[0][3] == "b.tsv:2" and got[1][3] == "b.tsv:4"


def test_a_quoted_line_break_keeps_the_line_numbers_of_the_file(tmp_path):
    path = _write(tmp_path / "m.csv", 'text,label\n"two\nlines",pos\nnext,neg\nlast,pos\n')
    got = [(text, uid) for text, _, _, uid in _read(path, header=True)]
    assert got == [("two\nlines", "m.csv:2"), ("next", "m.csv:4"), ("last", "m.csv:5")]


def test_ragged_row_names_line_and_fix(tmp_path):
    path = _write(tmp_path / "r.tsv", ROWS + "one\ttab\ttoo many\tpos\n")
    with pytest.raises(TableError, match=r"r\.tsv, line 6: 4 cells, expected 2 like line 1; a tab inside a text\?"):
        read_labelled_file(path)


@pytest.mark.parametrize(
    "content,kwargs,match",
    [
        (
            "x\ty\na\tb\n",
            dict(text_columns=["txt"], header=True),
            r"no text column named 'txt'; the header has \['x', 'y'\]",
        ),
        ("a\tb\n", dict(text_columns=["txt"], header=False), "is a name, but the file has no header"),
        ("a\t\nb\tc\n", dict(header=False), "line 1: empty text or label"),
        ("a\tb\n", dict(text_columns=["5"]), "text column 5 is out of range for rows of 2 cells"),
        ("a\tb\n", dict(text_columns=["1"]), r"the label column '-1' is also a text column; pass --label-column"),
    ],
)
def test_bad_column_choices_name_the_problem(tmp_path, content, kwargs, match):
    with pytest.raises(TableError, match=match):
        read_labelled_file(_write(tmp_path / "f.tsv", content), **kwargs)
