"""Fine-tune the same checkpoint on the same files under several attention settings and seeds,
and tabulate accuracy and attention density side by side (SSAF's comparison).

Each run is one `fairseq-sparse-finetune` process writing OUT/<setting>_s<seed>/ (resumable:
a finished run is reused); up to `parallel` run at once, each with OMP_NUM_THREADS threads.
"""

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fairseq_sparse.spread import SPREAD_RULE, compare_arms, mean_sd

# name -> fairseq-train attention options. "schedule" anneals alpha-entmax from 1.05 (about
# softmax) to 1.5 (entmax-1.5); its length is set per comparison (--sparsity-schedule-updates).
SETTINGS = {
    "softmax": ["--attn-normalizer", "softmax"],
    "sparsegen_lin_-4": ["--attn-normalizer", "sparsegen_lin", "--sparsegen-lambda", "-4"],
    "sparsegen_lin_-2": ["--attn-normalizer", "sparsegen_lin", "--sparsegen-lambda", "-2"],
    "sparsegen_lin_0": ["--attn-normalizer", "sparsegen_lin", "--sparsegen-lambda", "0"],
    "entmax15": ["--attn-normalizer", "entmax15"],
    "schedule": [
        "--attn-normalizer",
        "entmax_bisect",
        "--entmax-alpha",
        "1.5",
        "--sparsity-schedule-start-alpha",
        "1.05",
    ],
}


def run_name(setting, seed):
    return f"{setting}_s{seed}"


def compare(
    finetune_args,
    out_dir,
    settings,
    seeds=(1,),
    parallel=2,
    threads=1,
    schedule_updates=None,
    heartbeat=None,
    log=print,
):
    """Run every (setting, seed); returns rows {setting, seed, valid/test accuracy, test density, seconds}.

    finetune_args: the fairseq-sparse-finetune options shared by all runs (files, checkpoint, budget).
    heartbeat: every so many seconds, print the last progress line of each run in flight.
    """
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown attention settings {unknown}; expected some of {sorted(SETTINGS)}")
    if "schedule" in settings and not schedule_updates:
        raise ValueError("the 'schedule' setting needs schedule_updates (updates over which alpha is annealed)")
    os.makedirs(out_dir, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.time()

    def one(setting, seed):
        name = run_name(setting, seed)
        extra = list(SETTINGS[setting])
        if setting == "schedule":
            extra += ["--sparsity-schedule-updates", str(schedule_updates)]
        cmd = [
            sys.executable,
            "-m",
            "fairseq_sparse.cli.finetune",
            *map(str, finetune_args),
            "--seed",
            str(seed),
            "--out-dir",
            os.path.join(out_dir, name),
            *extra,
        ]
        t0 = time.time()
        with open(os.path.join(out_dir, name + ".log"), "w") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        if rc != 0:
            raise RuntimeError(f"run {name} failed (exit {rc}); see {os.path.join(out_dir, name + '.log')}")
        with open(os.path.join(out_dir, name, "results.json")) as f:
            results = json.load(f)
        scores = results["scores"]
        split = "test" if "test" in scores else "valid"
        test = scores[split]
        row = {
            "setting": setting,
            "seed": seed,
            "valid_accuracy": round(scores["valid"]["accuracy"], 2),
            "test_accuracy": round(test["accuracy"], 2),
            "test_macro_f1": round(test["macro_f1"], 2),
            "test_majority_accuracy": round(results["majority_baseline"][split]["accuracy"], 2),
            "test_examples": test["examples"],
            "test_attention_density": round(test["attention_density"], 4),
            "seconds": round(time.time() - t0),
        }
        log(
            f"  {name}: test accuracy {row['test_accuracy']:.2f}% on {row['test_examples']}, "
            f"attention density {row['test_attention_density']:.3f} "
            f"({row['seconds']} s; {time.time() - start:.0f} s so far)",
            flush=True,
        )
        return row

    jobs = [(s, seed) for seed in seeds for s in settings]
    done = threading.Event()
    if heartbeat:
        threading.Thread(
            target=_beat, args=(out_dir, [run_name(*j) for j in jobs], heartbeat, done, start, log), daemon=True
        ).start()
    try:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            rows = list(pool.map(lambda job: one(*job), jobs))
    finally:
        done.set()
    return rows


def _beat(out_dir, names, every, done, start, log):
    """Print the newest line of each unfinished run's log every `every` seconds."""
    while not done.wait(every):
        for name in names:
            path = os.path.join(out_dir, name + ".log")
            if os.path.isfile(path) and not os.path.isfile(os.path.join(out_dir, name, "results.json")):
                with open(path, errors="replace") as f:
                    lines = [line.strip() for line in f if line.strip()]
                log(f"  [{time.time() - start:.0f} s] {name}: {lines[-1][:200] if lines else 'starting'}", flush=True)


def arms_table(rows, baseline="softmax"):
    """Markdown lines: one per setting, mean ± sd over seeds of accuracy, macro-F1 and density, and each
    setting's test accuracy against `baseline`'s, read with the seeds' spread (fairseq_sparse/spread.py)."""
    lines = [
        "| attention | seeds | valid accuracy % | test accuracy % | test macro-F1 % | test attention density "
        f"| test accuracy - {baseline} |",
        "|---|---|---|---|---|---|---|",
    ]
    by_setting = {}
    for r in rows:
        by_setting.setdefault(r["setting"], []).append(r)
    base = [r["test_accuracy"] for r in by_setting.get(baseline, [])]
    for setting, sel in by_setting.items():

        def cell(key, spec):
            return mean_sd([r[key] for r in sel], spec).replace(" (1 seed)", "")

        diff, reading = compare_arms([r["test_accuracy"] for r in sel], base)
        versus = "" if setting == baseline or diff is None else f"{diff:+.2f} ({reading})"
        lines.append(
            f"| {setting} | {len(sel)} | {cell('valid_accuracy', '.2f')} | {cell('test_accuracy', '.2f')} "
            f"| {cell('test_macro_f1', '.2f')} | {cell('test_attention_density', '.3f')} | {versus} |"
        )
    return lines


def summary_table(rows, baseline="softmax"):
    """arms_table, then the majority-class baseline the accuracies are to be read against, and the reading rule."""
    majority = sorted({r["test_majority_accuracy"] for r in rows})
    lines = arms_table(rows, baseline) + [
        "",
        f"Majority-class baseline (the commonest training label for every example): test accuracy "
        f"{', '.join(f'{m:.2f}' for m in majority)}%. Reading: {SPREAD_RULE}.",
    ]
    return "\n".join(lines)
