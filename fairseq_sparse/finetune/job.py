"""One command from labelled files to a scored fine-tuned model: encode, train, evaluate.

    finetune(FinetuneJob(train=..., valid=..., test=..., checkpoint="minilm", out_dir="runs/ft"))

1. data (data.py): the files read and checked, tokenised with the checkpoint's own vocabulary
   (WordPiece vocab.txt of a converted BERT, or GPT-2 BPE files), binarised against its
   dict.txt -> OUT/data;
2. train: fairseq-train on the plugin's sentence_prediction recipe (commands.py), its JSON
   progress records condensed on the terminal (runner.py), the whole log in OUT/train.log;
3. evaluate (evaluation.py, metrics.py): checkpoint_best.pt on valid and test: accuracy,
   macro-F1, per-class F1, the majority-class baseline, attention density ->
   OUT/results.json, and each example's class probabilities -> OUT/predictions_<split>.tsv.

Every step resumes. The job record (options, and the contents of the labelled files, the
checkpoint and its tokenizer files) decides what is reused: the same record reuses
results.json, and checkpoints/checkpoint_last.pt only if written for it. Outputs appear under
their final names only when complete; results.json is written last.
"""

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ..atomic_files import atomic_output
from .commands import classification_flags, sentence_prediction_command
from .data import data_warnings, file_sha1, prepare_data, split_files
from .evaluation import predict, predicted, write_predictions
from .metrics import classification_scores, majority_baseline
from .recipe_cli import use_cuda
from .runner import run_logged


@dataclass
class FinetuneJob:
    train: str
    valid: str
    checkpoint: str  # a directory with model.pt, dict.txt, vocab.txt (fairseq-sparse-convert-bert) or a .pt file
    out_dir: str
    test: str | None = None
    text_columns: Sequence[str] = ("0",)
    label_column: str = "-1"
    header: bool | None = None  # None: detect a header row (tabular.py), refuse when unclear
    delimiter: str | None = None
    encoding: str = "utf-8"  # of the labelled files; a UTF-8 byte-order mark is dropped
    dictionary: str | None = None  # default: dict.txt next to the checkpoint
    vocab: str | None = None  # WordPiece vocab.txt; default: vocab.txt next to the checkpoint
    gpt2_encoder_json: str | None = None  # GPT-2 BPE files of a fairseq RoBERTa checkpoint
    gpt2_vocab_bpe: str | None = None
    cased: bool | None = None  # WordPiece casing; default: the checkpoint's
    max_length: int = 128  # tokens kept per text
    epochs: int = 3
    lr: float = 2e-5
    batch_size: int = 32
    warmup: float = 0.06  # fraction of the updates
    weight_decay: float = 0.01
    seed: int = 1
    log_interval: int = 10
    fairseq_args: Sequence[str] = field(default_factory=list)  # e.g. --attn-normalizer sparsegen_lin

    def check(self):
        for name in ("max_length", "epochs", "batch_size", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"--warmup is a fraction of the updates in [0, 1), got {self.warmup}")
        if self.weight_decay < 0:
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay}")


def checkpoint_files(job):
    """(model.pt path, dict.txt path, tokenizer Namespace, checkpoint model args)."""
    import argparse

    from ..convert.checkpoint import checkpoint_model_args

    path = job.checkpoint
    model = os.path.join(path, "model.pt") if os.path.isdir(path) else path
    if not os.path.isfile(model):
        raise FileNotFoundError(f"checkpoint not found: {model!r} (give a .pt file or a directory with model.pt)")
    here = os.path.dirname(os.path.abspath(model))
    dictionary = job.dictionary or os.path.join(here, "dict.txt")
    if not os.path.isfile(dictionary):
        raise FileNotFoundError(
            f"no dictionary {dictionary!r}: pass --dict (the dict.txt the checkpoint was trained with)"
        )
    args = checkpoint_model_args(model)
    tok = argparse.Namespace(
        srcdict=dictionary, bpe_cased=job.cased if job.cased is not None else bool(args.get("bpe_cased"))
    )
    if job.gpt2_encoder_json or job.gpt2_vocab_bpe:
        tok.bpe, tok.gpt2_encoder_json, tok.gpt2_vocab_bpe = "gpt2", job.gpt2_encoder_json, job.gpt2_vocab_bpe
    else:
        tok.bpe, tok.bpe_vocab_file = "bert_wordpiece", job.vocab or os.path.join(here, "vocab.txt")
        if not os.path.isfile(tok.bpe_vocab_file):
            raise FileNotFoundError(
                f"no WordPiece vocabulary {tok.bpe_vocab_file!r}: pass --vocab, or "
                "--gpt2-encoder-json and --gpt2-vocab-bpe for a GPT-2 BPE checkpoint"
            )
    return model, dictionary, tok, args


def training_command(job, model, model_args, data, meta, save_dir):
    updates = job.epochs * math.ceil(meta["splits"]["train"] / job.batch_size)
    flags = classification_flags(
        meta["num_classes"],
        lr=job.lr,
        batch_size=job.batch_size,
        total_updates=updates,
        warmup_updates=max(1, int(job.warmup * updates)) if job.warmup else None,
    )
    arch = model_args.get("arch") or "sparse_roberta"
    if not arch.startswith(("sparse_roberta", "sparsebert")):
        arch = "sparse_roberta_large" if arch.endswith("large") else "sparse_roberta"
    run = [
        "--max-epoch",
        str(job.epochs),
        "--seed",
        str(job.seed),
        "--weight-decay",
        str(job.weight_decay),
        "--num-workers",
        "0",
        "--log-format",
        "json",
        "--log-interval",
        str(job.log_interval),
    ]
    if not use_cuda():
        run.append("--cpu")
    return sentence_prediction_command(
        data, model, save_dir, flags, meta.get("bert_layout", True), arch=arch, extra=run + list(job.fairseq_args)
    )


def best_valid_accuracy(checkpoint):
    """The validation accuracy (%) fairseq selected checkpoint_best.pt with (rounded to 0.1 by fairseq)."""
    from ..checkpoint_reader import read_checkpoint

    return float(read_checkpoint(checkpoint, mmap=True)["extra_state"]["best"])


def job_record(job, model, tok):
    """What a finished run is reused for: the options, and the contents of the labelled files,
    the checkpoint file and its tokenizer files (another model converted into the same
    directory is another job)."""
    record = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in asdict(job).items() if k != "out_dir"}
    record["file_sha1"] = [file_sha1(p) for p in split_files(job).values()]
    record["checkpoint_sha1"] = file_sha1(model, "checkpoint")
    tokenizer = [getattr(tok, k, None) for k in ("srcdict", "bpe_vocab_file", "gpt2_encoder_json", "gpt2_vocab_bpe")]
    record["tokenizer_sha1"] = [file_sha1(p, "tokenizer file") for p in tokenizer if p]
    return record


def _say(*parts):
    print(*parts, flush=True)


def finetune(job, log=_say):
    """Run the three steps; returns (and writes to OUT/results.json) the scores."""
    job.check()
    model, _, tok, model_args = checkpoint_files(job)
    record = job_record(job, model, tok)
    results_path = os.path.join(job.out_dir, "results.json")
    if os.path.isfile(results_path):
        with open(results_path) as f:
            previous = json.load(f)
        if previous.get("job") == record:
            log(f"{results_path}: already done")
            return previous
        for name in [*previous.get("predictions", {}).values(), "results.json"]:  # another job's outputs
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(job.out_dir, name))
    t0 = time.time()
    data = os.path.join(job.out_dir, "data")
    meta = prepare_data(job, data, tok)
    log(
        f"data: {data} {meta['splits']}, {meta['num_classes']} classes {meta['label_names']} ({time.time() - t0:.0f} s)"
    )
    for warning in data_warnings(meta):
        log(f"WARNING: {warning}")
    save_dir = os.path.join(job.out_dir, "checkpoints")
    _claim_save_dir(save_dir, record, log)
    cmd = training_command(job, model, model_args, data, meta, save_dir)
    log("$ " + " ".join(cmd))
    train_seconds = run_logged(cmd, os.path.join(job.out_dir, "train.log"))
    t1 = time.time()
    best = os.path.join(save_dir, "checkpoint_best.pt")
    names = meta["label_names"]
    outputs = predict(best, data, [s for s in ("valid", "test") if s in meta["splits"]], batch_size=job.batch_size)
    scores, files = {}, {}
    for split, out in outputs.items():
        scores[split] = {"examples": len(out.gold), **classification_scores(out.gold, predicted(out), names)}
        if out.density_per_layer:
            scores[split]["attention_density"] = sum(out.density_per_layer) / len(out.density_per_layer)
            scores[split]["attention_density_per_layer"] = [round(x, 4) for x in out.density_per_layer]
        files[split] = f"predictions_{split}.tsv"
        write_predictions(os.path.join(job.out_dir, files[split]), out, names)
        log(
            f"{split}: accuracy {scores[split]['accuracy']:.2f}%, macro-F1 {scores[split]['macro_f1']:.2f}% on "
            f"{len(out.gold)} examples"
            + (f", attention density {scores[split]['attention_density']:.3f}" if out.density_per_layer else "")
        )
    baseline = majority_baseline(meta["class_counts"]["train"], {s: out.gold for s, out in outputs.items()}, names)
    log(
        "majority-class baseline ("
        + baseline["label"]
        + "): "
        + ", ".join(f"{s} accuracy {baseline[s]['accuracy']:.2f}%" for s in outputs)
    )
    results = {
        "job": record,
        "data": meta["splits"],
        "labels": names,
        "class_counts": meta["class_counts"],
        "header_rows": meta["header_rows"],
        "overlap_with_train": meta["overlap_with_train"],
        "majority_baseline": baseline,
        "checkpoint": best,
        "checkpoint_best_valid_accuracy": best_valid_accuracy(best),
        "scores": scores,
        "predictions": files,
        "seconds": {"train": round(train_seconds, 1), "evaluate": round(time.time() - t1, 1)},
    }
    with atomic_output(results_path) as f:
        json.dump(results, f, indent=1)
    return results


def _claim_save_dir(save_dir, record, log):
    """fairseq resumes from SAVE_DIR/checkpoint_last.pt: keep it only if this same job wrote it."""
    marker = os.path.join(save_dir, "job.json")
    if os.path.isdir(save_dir):
        try:
            with open(marker) as f:
                same = json.load(f) == record
        except (OSError, ValueError):
            same = False
        if same:
            log(f"{save_dir}: resuming the same job")
            return
        log(f"{save_dir}: written by a different job, starting over")
        shutil.rmtree(save_dir)
    os.makedirs(save_dir)
    with atomic_output(marker) as f:
        json.dump(record, f)
