"""One command from labelled files to a scored fine-tuned model: encode, train, evaluate.

    finetune(FinetuneJob(train=..., valid=..., test=..., checkpoint="minilm", out_dir="runs/ft"))

1. data: the texts are tokenised with the checkpoint's own vocabulary (WordPiece vocab.txt of a
   converted BERT, or GPT-2 BPE files) and binarised against its dict.txt -> OUT/data;
2. train: fairseq-train on the plugin's sentence_prediction recipe (finetune/commands.py): the
   encoder shape comes from the checkpoint, the new head's output layer from --seed, Adam with
   no weight decay on biases and LayerNorm, linear decay after warm-up -> OUT/checkpoints;
   its output is streamed (a condensed line per --log-interval updates) into OUT/train.log;
3. evaluate: checkpoint_best.pt on valid (and test): accuracy and attention density (the
   fraction of non-zero attention weights over the real keys, per layer) -> OUT/results.json.

Every step resumes: finished data and results are reused, an interrupted training run continues
from OUT/checkpoints/checkpoint_last.pt. Outputs appear under their final names only when complete.
"""
import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

from ..atomic_files import atomic_output
from .commands import classification_flags, sentence_prediction_command
from .recipe_cli import use_cuda
from .tabular import label_names, read_labelled_file

PROGRESS = re.compile(r"\| (train_inner|valid|train) \||done training|Error|error:")


@dataclass
class FinetuneJob:
    train: str
    valid: str
    checkpoint: str  # a directory with model.pt, dict.txt, vocab.txt (fairseq-sparse-convert-bert) or a .pt file
    out_dir: str
    test: Optional[str] = None
    text_columns: Sequence[str] = ("0",)
    label_column: str = "-1"
    header: bool = False
    delimiter: Optional[str] = None
    dictionary: Optional[str] = None  # default: dict.txt next to the checkpoint
    vocab: Optional[str] = None  # WordPiece vocab.txt; default: vocab.txt next to the checkpoint
    gpt2_encoder_json: Optional[str] = None  # GPT-2 BPE files of a fairseq RoBERTa checkpoint
    gpt2_vocab_bpe: Optional[str] = None
    cased: Optional[bool] = None  # WordPiece casing; default: the checkpoint's
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
        raise FileNotFoundError(f"no dictionary {dictionary!r}: pass --dict (the dict.txt the checkpoint was trained with)")
    args = checkpoint_model_args(model)
    tok = argparse.Namespace(srcdict=dictionary, bpe_cased=job.cased if job.cased is not None else bool(args.get("bpe_cased")))
    if job.gpt2_encoder_json or job.gpt2_vocab_bpe:
        tok.bpe, tok.gpt2_encoder_json, tok.gpt2_vocab_bpe = "gpt2", job.gpt2_encoder_json, job.gpt2_vocab_bpe
    else:
        tok.bpe, tok.bpe_vocab_file = "bert_wordpiece", job.vocab or os.path.join(here, "vocab.txt")
        if not os.path.isfile(tok.bpe_vocab_file):
            raise FileNotFoundError(f"no WordPiece vocabulary {tok.bpe_vocab_file!r}: pass --vocab, or "
                                    "--gpt2-encoder-json and --gpt2-vocab-bpe for a GPT-2 BPE checkpoint")
    return model, dictionary, tok, args


def prepare_data(job, dest, tok):
    """Encode and binarise the files into dest (reused when made from the same inputs); returns meta."""
    from ..data.sentence_prediction_data import read_meta, write_sentence_prediction_data
    from ..data.checkpoint_tokenizer import build_tokenizer, uses_bert_layout

    inputs = {"files": [_sha1(p) for p in (job.train, job.valid, job.test) if p],
              "columns": [list(job.text_columns), job.label_column, job.header, job.delimiter],
              "tokenizer": sorted((k, str(v)) for k, v in vars(tok).items()), "max_length": job.max_length}
    if os.path.isfile(os.path.join(dest, "meta.json")) and read_meta(dest).get("inputs") == inputs:
        return read_meta(dest)
    read = dict(text_columns=job.text_columns, label_column=job.label_column, header=job.header, delimiter=job.delimiter)
    splits = {"train": read_labelled_file(job.train, **read), "valid": read_labelled_file(job.valid, **read)}
    if job.test:
        splits["test"] = read_labelled_file(job.test, **read)
    names = label_names(splits["train"], {k: v for k, v in splits.items() if k != "train"})
    return write_sentence_prediction_data(dest, splits, build_tokenizer(tok), tok.srcdict, label_names=names,
                                          max_tokens=job.max_length,
                                          extra_meta={"bert_layout": uses_bert_layout(tok), "inputs": inputs})


def _sha1(path):
    import hashlib

    if not os.path.isfile(path):
        raise FileNotFoundError(f"labelled file not found: {path!r}")
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def training_command(job, model, model_args, data, meta, save_dir):
    updates = job.epochs * math.ceil(meta["splits"]["train"] / job.batch_size)
    flags = classification_flags(meta["num_classes"], lr=job.lr, batch_size=job.batch_size, total_updates=updates,
                                 warmup_updates=max(1, int(job.warmup * updates)) if job.warmup else None)
    arch = model_args.get("arch") or "sparse_roberta"
    if not arch.startswith(("sparse_roberta", "sparsebert")):
        arch = "sparse_roberta_large" if arch.endswith("large") else "sparse_roberta"
    run = ["--max-epoch", str(job.epochs), "--seed", str(job.seed), "--weight-decay", str(job.weight_decay),
           "--num-workers", "0", "--log-format", "simple", "--log-interval", str(job.log_interval)]
    if not use_cuda():
        run.append("--cpu")
    return sentence_prediction_command(data, model, save_dir, flags, meta.get("bert_layout", True), arch=arch,
                                       extra=run + list(job.fairseq_args))


def run_logged(cmd, log_path, echo=PROGRESS, heartbeat=30.0, env=None, prefix="  "):
    """Run cmd, write all of its output to log_path (atomically at the end), print the lines
    that match `echo` as they come and a heartbeat when nothing was printed for `heartbeat` s.
    Raises RuntimeError with the log's tail if the command fails."""
    start = last = time.time()
    done = threading.Event()

    def beat():
        nonlocal last
        while not done.wait(1.0):
            if time.time() - last >= heartbeat:
                print(f"{prefix}... running for {time.time() - start:.0f} s (log so far: {partial})", flush=True)
                last = time.time()

    tail = []
    thread = threading.Thread(target=beat, daemon=True)
    try:
        with atomic_output(log_path) as log:
            partial = log.name
            thread.start()
            proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, env=env)
            for line in proc.stdout:
                log.write(line)
                log.flush()
                tail = (tail + [line])[-40:]
                if echo is not None and echo.search(line):
                    print(prefix + _condense(line), flush=True)
                    last = time.time()
            rc = proc.wait()
    finally:
        done.set()
    if rc != 0:
        raise RuntimeError(f"command failed (exit {rc}): {' '.join(map(str, cmd))}\n{''.join(tail)}"
                           f"full log: {log_path}")
    return time.time() - start


def _condense(line):
    """A fairseq log line without its timestamp and level; per-layer attention figures averaged."""
    line = re.sub(r"^\S+ \S+ \| \w+ \| \S+ \| ", "", line.rstrip())
    dens = [float(x) for x in re.findall(r"attn_density_l\d+=([0-9.]+)", line)]
    line = re.sub(r" \| attn_(density|support)_l\d+ [0-9.]+|attn_(density|support)_l\d+=[0-9.]+,? ?", "", line)
    return line + (f" | attn_density(mean) {sum(dens) / len(dens):.3f}" if dens else "")


def best_valid_accuracy(checkpoint):
    """The validation accuracy (%) fairseq selected checkpoint_best.pt with."""
    from ..checkpoint_reader import read_checkpoint

    return float(read_checkpoint(checkpoint, mmap=True)["extra_state"]["best"])


def evaluate(checkpoint, data, splits, batch_size=32):
    """{split: {accuracy (%), examples, attention_density, attention_density_per_layer}}."""
    import torch
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides={"data": data})
    model = models[0].eval()
    attn = model.attention_modules() if hasattr(model, "attention_modules") else []
    head = task.cfg.classification_head_name
    out = {}
    for split in splits:
        task.load_dataset(split)
        itr = task.get_batch_iterator(task.dataset(split), max_sentences=batch_size, max_positions=task.max_positions(),
                                      ignore_invalid_inputs=False).next_epoch_itr(shuffle=False)
        correct = total = 0
        nonzero = torch.zeros(len(attn), dtype=torch.float64)
        possible = 0.0
        for m in attn:
            m.capture_attention = True
        try:
            with torch.no_grad():
                for sample in itr:
                    tokens = sample["net_input"]["src_tokens"]
                    logits = model(**sample["net_input"], features_only=True, classification_head_name=head)[0]
                    target = sample["target"].view(-1)
                    correct += int((logits.argmax(-1) == target).sum())
                    total += len(target)
                    real = tokens.ne(task.source_dictionary.pad()).double()  # (B, T)
                    pairs = real[:, None, :, None] * real[:, None, None, :]  # real query x real key
                    possible += float(pairs.sum()) * (attn[0].num_heads if attn else 1)
                    for i, m in enumerate(attn):
                        nonzero[i] += float(((m.last_attention > 0).double() * pairs).sum())
        finally:
            for m in attn:
                m.capture_attention, m.last_attention = False, None
        per_layer = (nonzero / max(possible, 1.0)).tolist()
        out[split] = {"accuracy": 100.0 * correct / max(total, 1), "examples": total,
                      "attention_density": sum(per_layer) / max(len(per_layer), 1),
                      "attention_density_per_layer": [round(x, 4) for x in per_layer]}
    return out


def _say(*parts):
    print(*parts, flush=True)


def finetune(job, log=_say):
    """Run the three steps; returns (and writes to OUT/results.json) the scores."""
    job.check()
    results_path = os.path.join(job.out_dir, "results.json")
    if os.path.isfile(results_path):
        with open(results_path) as f:
            results = json.load(f)
        if results.get("job") == _job_record(job):
            log(f"{results_path}: already done")
            return results
    os.makedirs(job.out_dir, exist_ok=True)
    model, _, tok, model_args = checkpoint_files(job)
    t0 = time.time()
    data = os.path.join(job.out_dir, "data")
    meta = prepare_data(job, data, tok)
    log(f"data: {data} {meta['splits']}, {meta['num_classes']} classes {meta['label_names']} ({time.time() - t0:.0f} s)")
    save_dir = os.path.join(job.out_dir, "checkpoints")
    _claim_save_dir(save_dir, _job_record(job), log)
    cmd = training_command(job, model, model_args, data, meta, save_dir)
    log("$ " + " ".join(cmd))
    train_seconds = run_logged(cmd, os.path.join(job.out_dir, "train.log"))
    t1 = time.time()
    best = os.path.join(save_dir, "checkpoint_best.pt")
    # fairseq scored every epoch on valid to choose checkpoint_best.pt; the test file is scored once
    scores = {"valid": {"accuracy": best_valid_accuracy(best), "examples": meta["splits"]["valid"]}}
    scores.update(evaluate(best, data, ["test"] if "test" in meta["splits"] else ["valid"], batch_size=job.batch_size))
    for split, s in scores.items():
        log(f"{split}: accuracy {s['accuracy']:.2f}% on {s['examples']} examples"
            + (f", attention density {s['attention_density']:.3f}" if "attention_density" in s else ""))
    results = {"job": _job_record(job), "data": meta["splits"], "labels": meta["label_names"],
               "checkpoint": os.path.join(save_dir, "checkpoint_best.pt"), "scores": scores,
               "seconds": {"train": round(train_seconds, 1), "evaluate": round(time.time() - t1, 1)}}
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


def _job_record(job):
    """What a finished run is reused for: the options and the labelled files' contents."""
    record = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in asdict(job).items() if k != "out_dir"}
    record["file_sha1"] = [_sha1(p) for p in (job.train, job.valid, job.test) if p]
    return record
