"""The labelled files as fairseq data: read and checked together, binarised once per input.

The training file decides the label set and the header row the other files are compared with
(tabular.py reads each file). What a user of imbalanced or leaky data must know is recorded in
OUT/data/meta.json beside the data: class counts per split, the header rows skipped, and the
valid/test texts that also occur in the training file. OUT/data is rebuilt only when an input
changes: the files' contents, the column options, the tokenizer files' contents or the length.
"""

import hashlib
import os

from .metrics import class_counts
from .tabular import label_names, read_labelled_file


def file_sha1(path, what="labelled file"):
    """Hex SHA-1 of a file's contents: what a cached result is keyed on."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path!r}")
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_files(job):
    """{split: path} of the job's labelled files, train first."""
    return {k: p for k, p in (("train", job.train), ("valid", job.valid), ("test", job.test)) if p}


def read_splits(job):
    """({split: [Example]}, class names, {split: skipped header row or None}); raises TableError."""
    options = dict(
        text_columns=job.text_columns,
        label_column=job.label_column,
        header=job.header,
        delimiter=job.delimiter,
        encoding=job.encoding,
    )
    files = split_files(job)
    train = read_labelled_file(files["train"], **options)
    known = sorted({ex.label for ex in train.examples})
    tables = {"train": train}
    for split, path in files.items():
        if split != "train":
            tables[split] = read_labelled_file(path, known_labels=known, header_like=train.header, **options)
    splits = {split: t.examples for split, t in tables.items()}
    names = label_names(splits["train"], {k: v for k, v in splits.items() if k != "train"})
    return splits, names, {split: t.header for split, t in tables.items()}


def _key(ex):
    return " ".join(ex.text_a.split()).lower(), " ".join((ex.text_b or "").split()).lower()


def overlap_with_train(splits):
    """{split: {"examples": n, "first": [uid, training uid]}} for the valid/test examples whose
    text (case and whitespace aside) is also a training text: their score is not a held-out one."""
    seen = {}
    for ex in splits["train"]:
        seen.setdefault(_key(ex), ex.uid)
    out = {}
    for split, examples in splits.items():
        if split == "train":
            continue
        dup = [(ex.uid, seen[_key(ex)]) for ex in examples if _key(ex) in seen]
        out[split] = {"examples": len(dup), "first": list(dup[0]) if dup else None}
    return out


def data_warnings(meta):
    """One line per finding a user must see: texts shared with the training file, header rows skipped."""
    lines = []
    if meta["inputs"]["columns"][2] is None:  # neither --header nor --no-header: say what was decided
        for split, header in meta.get("header_rows", {}).items():
            if header:
                lines.append(
                    f"the first row of the {split} file, {header}, looks like a header row and was "
                    "skipped; pass --header to say so, or --no-header if it is an example"
                )
    for split, found in meta.get("overlap_with_train", {}).items():
        if found["examples"]:
            n = meta["splits"][split]
            lines.append(
                f"{found['examples']} of {n} {split} texts also occur in the training file (first: "
                f"{found['first'][0]} = {found['first'][1]}); the {split} score is not a held-out score"
            )
    return lines


def prepare_data(job, dest, tok):
    """Encode and binarise the files into dest (reused when made from the same inputs); returns meta."""
    from ..data.checkpoint_tokenizer import build_tokenizer, uses_bert_layout
    from ..data.sentence_prediction_data import read_meta, write_sentence_prediction_data

    tokenizer_files = [
        p
        for p in (getattr(tok, k, None) for k in ("srcdict", "bpe_vocab_file", "gpt2_encoder_json", "gpt2_vocab_bpe"))
        if p
    ]
    inputs = {
        "files": [file_sha1(p) for p in split_files(job).values()],
        "columns": [list(job.text_columns), job.label_column, job.header, job.delimiter, job.encoding],
        "tokenizer": sorted((k, str(v)) for k, v in vars(tok).items()),
        "tokenizer_sha1": [file_sha1(p, "tokenizer file") for p in tokenizer_files],
        "max_length": job.max_length,
    }
    if os.path.isfile(os.path.join(dest, "meta.json")) and read_meta(dest).get("inputs") == inputs:
        return read_meta(dest)
    splits, names, headers = read_splits(job)
    extra = {
        "bert_layout": uses_bert_layout(tok),
        "inputs": inputs,
        "header_rows": headers,
        "class_counts": {s: class_counts([ex.label for ex in exs], names) for s, exs in splits.items()},
        "overlap_with_train": overlap_with_train(splits),
    }
    return write_sentence_prediction_data(
        dest, splits, build_tokenizer(tok), tok.srcdict, label_names=names, max_tokens=job.max_length, extra_meta=extra
    )
