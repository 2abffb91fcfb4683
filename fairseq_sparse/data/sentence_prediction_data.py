"""Examples -> the input0/input1/label directories fairseq's sentence_prediction task reads.

Every reader (GLUE, SST, SemEval, SenTube, SciTail) produces `Example`s per split; this
module tokenises them with the checkpoint's tokenizer, binarises them with fairseq-preprocess
against the checkpoint's dictionary, and fixes the label dictionary so that class index k
is label k (fairseq-preprocess would order labels by frequency). `meta.json` records what a
fine-tuning run and the predictions script need (number of classes, label names, splits).
"""

import json
import logging
import os
import shutil
from dataclasses import dataclass

from ..atomic_files import atomic_directory

logger = logging.getLogger(__name__)


@dataclass
class Example:
    text_a: str
    text_b: str | None = None
    label: object | None = None  # class name (str) or float for regression; None if unlabelled
    uid: str | None = None  # id in the source file (GLUE server files need it)


def _clean(text):
    """One example per line: newlines and tabs inside a field would break the line files."""
    return " ".join(str(text).split())


def write_sentence_prediction_data(
    dest, splits, tokenizer, srcdict, label_names=None, regression=False, workers=1, extra_meta=None, max_tokens=None
):
    """Build DEST/{input0,input1,label}/ and DEST/meta.json atomically.

    splits: ordered {fairseq split name ("train", "valid", "valid1", "test", ...): [Example]}.
    label_names: class names in index order (classification); ignored with regression=True.
    max_tokens: keep only the first max_tokens tokens of each text (long documents on a CPU).
    """

    def encode(text):
        if not max_tokens:
            return tokenizer.encode(_clean(text))
        # every word gives at least one token, so the first max_tokens words are enough to tokenise
        words = str(text).split()[:max_tokens]
        return " ".join(tokenizer.encode(" ".join(words)).split()[:max_tokens])

    if not splits:
        raise ValueError("no splits to write")
    if not regression:
        if not label_names:
            raise ValueError("classification data needs label_names (class names in index order)")
        index = {name: i for i, name in enumerate(label_names)}
    pairs = {any(ex.text_b is not None for ex in exs) for exs in splits.values() if exs}
    if len(pairs) > 1:
        raise ValueError("some splits have a second sentence and others do not")
    has_pair = pairs == {True}
    with atomic_directory(dest) as tmp:
        raw = os.path.join(tmp, "raw")
        os.makedirs(raw)
        labelled = []
        for split, examples in splits.items():
            if not examples:
                raise ValueError(f"split {split!r} is empty")
            cols = {"input0": [], "input1": [], "label": []}
            for i, ex in enumerate(examples):
                cols["input0"].append(encode(ex.text_a))
                if has_pair:
                    if ex.text_b is None:
                        raise ValueError(f"{split} example {i} ({ex.uid}) lacks its second sentence")
                    cols["input1"].append(encode(ex.text_b))
                if ex.label is not None:
                    if regression:
                        cols["label"].append(repr(float(ex.label)))
                    elif str(ex.label) in index:
                        cols["label"].append(str(index[str(ex.label)]))
                    else:
                        raise ValueError(
                            f"{split} example {i} ({ex.uid}): label {ex.label!r} is not one of {label_names}"
                        )
            n_labels = len(cols["label"])
            if n_labels not in (0, len(examples)):
                raise ValueError(f"split {split!r}: {n_labels} of {len(examples)} examples have labels (all or none)")
            if n_labels:
                labelled.append(split)
            for key, lines in cols.items():
                if lines:
                    _write_lines(os.path.join(raw, f"{split}.{key}"), lines)
            _write_lines(
                os.path.join(raw, f"{split}.id"),
                [str(ex.uid if ex.uid is not None else i) for i, ex in enumerate(examples)],
            )
        inputs = ["input0", "input1"] if has_pair else ["input0"]
        for key in inputs:
            binarize(raw, list(splits), key, os.path.join(tmp, key), srcdict, workers)
        if labelled:
            label_dir = os.path.join(tmp, "label")
            if regression:
                os.makedirs(label_dir)
                for split in labelled:
                    shutil.copy(os.path.join(raw, f"{split}.label"), os.path.join(label_dir, f"{split}.label"))
            else:
                label_dict = os.path.join(raw, "label_dict.txt")
                _write_lines(label_dict, [f"{i} 1" for i in range(len(label_names))])
                binarize(raw, labelled, "label", label_dir, label_dict, workers)
        meta = {
            "num_classes": 1 if regression else len(label_names),
            "regression": regression,
            "label_names": None if regression else list(label_names),
            "pair": has_pair,
            "splits": {s: len(e) for s, e in splits.items()},
            "max_tokens": max_tokens,
            **(extra_meta or {}),
        }
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
    logger.info("wrote %s: %s", dest, meta["splits"])
    return meta


def binarize(raw_dir, split_names, key, destdir, srcdict, workers=1):
    """fairseq-preprocess --only-source on raw_dir/{split}.{key} for each split, in-process."""
    from fairseq import options
    from fairseq_cli import preprocess

    prefix = {"train": [], "valid": [], "test": []}
    for split in split_names:
        kind = next((k for k in prefix if split.startswith(k)), None)
        expected = kind + (str(len(prefix[kind])) if prefix[kind] else "") if kind else None
        if split != expected:
            raise ValueError(f"split names must be train, valid, valid1, ..., test, test1, ... in order; got {split!r}")
        prefix[kind].append(os.path.join(raw_dir, f"{split}.{key}"))
    argv = [
        "--only-source",
        "--srcdict",
        srcdict,
        "--destdir",
        destdir,
        "--workers",
        str(workers),
        "--dataset-impl",
        "mmap",
    ]
    for kind, files in prefix.items():
        if files:
            argv += [f"--{kind}pref", ",".join(files)]
    args = options.get_preprocessing_parser().parse_args(argv)
    log = logging.getLogger("fairseq_cli.preprocess")
    before = list(log.handlers)
    try:
        preprocess.main(args)
    finally:  # preprocess.main adds a file handler per call; drop it so calls do not pile up
        for handler in [h for h in log.handlers if h not in before]:
            log.removeHandler(handler)
            handler.close()


def _write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


def read_meta(data_dir):
    path = os.path.join(data_dir, "meta.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} not found: was {data_dir!r} written by the plugin's preprocessing?")
    with open(path) as f:
        return json.load(f)
