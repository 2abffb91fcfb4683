"""GLUE tasks: the column layouts of the official TSVs, labels, metrics and fine-tuning settings.

Layout read: GLUE_DIR/<Task>/{train,dev,test}.tsv as produced by the GLUE download
(MNLI: dev_matched/dev_mismatched/test_matched/test_mismatched). Columns are found by header
name, except CoLA train/dev which have no header. Fields are split on tabs without CSV
quoting: MNLI and QQP contain stray quote characters that a CSV reader would merge.

Hyper-parameters are those of the RoBERTa paper's GLUE fine-tuning (lr, batch size, total
and warm-up updates, 10 epochs); the metric is each task's official one.
"""

import logging
import os
from dataclasses import dataclass, field

from .sentence_prediction_data import Example

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlueTask:
    name: str  # directory name in the GLUE download
    text_a: object  # header name (or column index for header-less files)
    text_b: object | None
    label: object
    label_names: tuple[str, ...] | None  # None: regression
    files: dict[str, str]  # fairseq split -> file name (without .tsv)
    test_columns: tuple[str, str | None]  # text_a, text_b header names in the test files
    test_id: str = "index"
    server_files: dict[str, str] = field(default_factory=dict)  # test split -> GLUE server file
    train_header: bool = True
    metric: str = "accuracy"  # fairseq's --best-checkpoint-metric
    criterion_flags: tuple[str, ...] = ()
    lr: float = 1e-5
    batch_size: int = 32
    total_updates: int = 0
    warmup_updates: int = 0

    @property
    def regression(self):
        return self.label_names is None

    @property
    def num_classes(self):
        return 1 if self.regression else len(self.label_names)


BINARY = ("0", "1")
NLI2 = ("entailment", "not_entailment")
STD = {"train": "train", "valid": "dev", "test": "test"}

TASKS = {
    t.name.lower(): t
    for t in (
        GlueTask(
            "CoLA",
            3,
            None,
            1,
            BINARY,
            STD,
            ("sentence", None),
            server_files={"test": "CoLA.tsv"},
            train_header=False,
            metric="mcc",
            criterion_flags=("--report-mcc",),
            lr=1e-5,
            batch_size=16,
            total_updates=5336,
            warmup_updates=320,
        ),
        GlueTask(
            "SST-2",
            "sentence",
            None,
            "label",
            BINARY,
            STD,
            ("sentence", None),
            server_files={"test": "SST-2.tsv"},
            lr=1e-5,
            batch_size=32,
            total_updates=20935,
            warmup_updates=1256,
        ),
        GlueTask(
            "MRPC",
            "#1 String",
            "#2 String",
            "Quality",
            BINARY,
            STD,
            ("#1 String", "#2 String"),
            server_files={"test": "MRPC.tsv"},
            metric="acc_and_f1",
            criterion_flags=("--report-acc-and-f1",),
            lr=1e-5,
            batch_size=16,
            total_updates=2296,
            warmup_updates=137,
        ),
        GlueTask(
            "STS-B",
            "sentence1",
            "sentence2",
            "score",
            None,
            STD,
            ("sentence1", "sentence2"),
            server_files={"test": "STS-B.tsv"},
            metric="pearson_and_spearman",
            criterion_flags=("--report-pearson-and-spearman", "--regression-target"),
            lr=2e-5,
            batch_size=16,
            total_updates=3598,
            warmup_updates=214,
        ),
        GlueTask(
            "QQP",
            "question1",
            "question2",
            "is_duplicate",
            BINARY,
            STD,
            ("question1", "question2"),
            test_id="id",
            server_files={"test": "QQP.tsv"},
            metric="acc_and_f1",
            criterion_flags=("--report-acc-and-f1",),
            lr=1e-5,
            batch_size=32,
            total_updates=113272,
            warmup_updates=28318,
        ),
        GlueTask(
            "MNLI",
            "sentence1",
            "sentence2",
            "gold_label",
            ("entailment", "neutral", "contradiction"),
            {
                "train": "train",
                "valid": "dev_matched",
                "valid1": "dev_mismatched",
                "test": "test_matched",
                "test1": "test_mismatched",
            },
            ("sentence1", "sentence2"),
            server_files={"test": "MNLI-m.tsv", "test1": "MNLI-mm.tsv"},
            lr=1e-5,
            batch_size=32,
            total_updates=123873,
            warmup_updates=7432,
        ),
        GlueTask(
            "QNLI",
            "question",
            "sentence",
            "label",
            NLI2,
            STD,
            ("question", "sentence"),
            server_files={"test": "QNLI.tsv"},
            lr=1e-5,
            batch_size=32,
            total_updates=33112,
            warmup_updates=1986,
        ),
        GlueTask(
            "RTE",
            "sentence1",
            "sentence2",
            "label",
            NLI2,
            STD,
            ("sentence1", "sentence2"),
            server_files={"test": "RTE.tsv"},
            lr=2e-5,
            batch_size=16,
            total_updates=2036,
            warmup_updates=122,
        ),
    )
}


def get_task(name):
    key = name.lower().replace("_", "-")
    key = {"sst2": "sst-2", "stsb": "sts-b", "sts": "sts-b"}.get(key, key)
    if key not in TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; expected one of {[t.name for t in TASKS.values()]}")
    return TASKS[key]


def _read_tsv(path):
    with open(path, encoding="utf-8-sig") as f:
        return [line.rstrip("\r\n").split("\t") for line in f if line.strip()]


def _column(header, ref, path):
    if isinstance(ref, int):
        return ref
    if ref not in header:
        raise ValueError(f"{path}: no column {ref!r} in header {header}")
    return header.index(ref)


def read_split(task, path, labelled):
    """[Example] from one GLUE TSV; rows with too few fields (a few in QQP) are skipped with a warning."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GLUE file not found: {path!r}")
    rows = _read_tsv(path)
    has_header = labelled is False or task.train_header
    header = rows[0] if has_header else None
    if has_header:
        rows = rows[1:]
    if labelled:
        cols = [
            _column(header, task.text_a, path),
            None if task.text_b is None else _column(header, task.text_b, path),
            _column(header, task.label, path),
        ]
        id_col = None
    else:
        a, b = task.test_columns
        cols = [_column(header, a, path), None if b is None else _column(header, b, path), None]
        id_col = _column(header, task.test_id, path)
    width = max(c for c in cols + [id_col] if c is not None) + 1
    examples, skipped = [], []
    for i, row in enumerate(rows):
        if len(row) < width:
            skipped.append(i + 1 + has_header)  # line number in the file
            continue
        label = None
        if labelled:
            label = row[cols[2]].strip()
            if task.regression:
                try:
                    label = float(label)
                except ValueError:
                    raise ValueError(f"{path} line {i + 1 + has_header}: score {label!r} is not a number") from None
            elif label not in task.label_names:
                raise ValueError(f"{path} line {i + 1 + has_header}: label {label!r} is not one of {task.label_names}")
        examples.append(
            Example(
                row[cols[0]],
                None if cols[1] is None else row[cols[1]],
                label,
                row[id_col] if id_col is not None else str(i),
            )
        )
    if skipped:
        logger.warning(
            "%s: skipped %d malformed rows (fewer than %d fields): lines %s%s",
            path,
            len(skipped),
            width,
            ", ".join(map(str, skipped[:10])),
            " ..." if len(skipped) > 10 else "",
        )
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def read_glue(glue_dir, task, include_test=True):
    """{fairseq split: [Example]} for one task of a GLUE download."""
    task_dir = os.path.join(glue_dir, task.name)
    if not os.path.isdir(task_dir):
        raise FileNotFoundError(f"{task_dir!r} not found (expected GLUE_DIR/{task.name}/train.tsv ...)")
    splits = {}
    for split, name in task.files.items():
        if split.startswith("test"):
            path = os.path.join(task_dir, name + ".tsv")
            if include_test and os.path.isfile(path):
                splits[split] = read_split(task, path, labelled=False)
            elif include_test:
                logger.warning("%s not found: no test split", path)
            continue
        splits[split] = read_split(task, os.path.join(task_dir, name + ".tsv"), labelled=True)
    return splits
