"""Run a long command with all of its output in a log file and a short progress line on the terminal.

Shared by the one-command fine-tune and scripts/run_demo.py. fairseq-train run with
`--log-format json` writes each progress record as `TIME | LEVEL | TAG | {json}`; the records
are read as JSON (fairseq_records), never by pattern-matching the text, and a condensed line of
each (per-layer attention figures averaged) is printed. The log appears under its final name
only when the command has succeeded (a failed one's as LOG.failed), so a log that exists is complete.
"""

import json
import os
import subprocess
import threading
import time

from ..atomic_files import atomic_output

TAGS = ("train_inner", "train", "valid")  # fairseq's progress loggers
_NOISE = {
    "epoch",
    "update",
    "wps",
    "ups",
    "wpb",
    "bsz",
    "gnorm",
    "clip",
    "loss_scale",
    "train_wall",
    "gb_free",
    "wall",
    "num_updates",
    "nll_loss",
    "ppl",
}
_ALERTS = ("Error", "error:", "Traceback", "done training")


def parse_record(line):
    """(tag, record dict) of one fairseq JSON progress line, else None."""
    parts = line.rstrip("\n").split(" | ", 3)
    if len(parts) != 4 or parts[2] not in TAGS or not parts[3].startswith("{"):
        return None
    try:
        return parts[2], json.loads(parts[3])
    except ValueError:
        return None


def fairseq_records(log_text, tag):
    """The records of one tag, in order, with each value as a number where it is one and the
    tag's prefix dropped from the keys ("valid_loss" -> "loss"): e.g. fairseq_records(log, "valid")[-1]["loss"]."""
    out = []
    for line in log_text.splitlines():
        parsed = parse_record(line)
        if parsed and parsed[0] == tag:
            out.append({_unprefix(k, tag): _number(v) for k, v in parsed[1].items()})
    return out


def _unprefix(key, tag):
    return key[len(tag) + 1 :] if key.startswith(tag + "_") else key


def _number(value):
    try:
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value


def condense(line):
    """The line to print for one line of output, or None: a progress record in a few fields
    (`valid | epoch 1 | loss 1.2 | accuracy 75 | attn_density(mean) 0.214`), an error as it is,
    and a progress line of another log format without its timestamp."""
    parsed = parse_record(line)
    if parsed:
        tag, raw = parsed
        record = {_unprefix(k, tag): _number(v) for k, v in raw.items()}
        fields = [f"epoch {record['epoch']}"] if "epoch" in record else []
        if "num_updates" in record:
            fields.append(f"update {record['num_updates']:g}")
        density = [v for k, v in record.items() if k.startswith("attn_density_l") and isinstance(v, float)]
        fields += [
            f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in record.items()
            if k not in _NOISE and not k.startswith("attn_")
        ]
        if density:
            fields.append(f"attn_density(mean) {sum(density) / len(density):.3f}")
        return " | ".join([tag, *fields])
    parts = line.rstrip().split(" | ", 3)
    if len(parts) == 4 and parts[2] in TAGS:
        return f"{parts[2]} | {parts[3]}"
    if any(alert in line for alert in _ALERTS):
        return line.rstrip()
    return None


def run_logged(cmd, log_path, echo=condense, heartbeat=30.0, env=None, prefix="  "):
    """Run cmd, write all of its output to log_path (atomically at the end), print echo(line)
    for each line where it is not None, and a heartbeat when nothing was printed for `heartbeat` s.
    Raises RuntimeError with the log's tail if the command fails; returns the seconds it ran."""
    start = last = time.time()
    done = threading.Event()
    partial = log_path

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
            proc = subprocess.Popen(
                [str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
            )
            for line in proc.stdout:
                log.write(line)
                log.flush()
                tail = (tail + [line])[-40:]
                shown = echo(line) if echo is not None else None
                if shown is not None:
                    print(prefix + shown, flush=True)
                    last = time.time()
            rc = proc.wait()
    finally:
        done.set()
    if rc != 0:  # kept aside: a log under its final name means a finished command
        os.replace(log_path, log_path + ".failed")
        raise RuntimeError(
            f"command failed (exit {rc}): {' '.join(map(str, cmd))}\n{''.join(tail)}full log: {log_path}.failed"
        )
    return time.time() - start
