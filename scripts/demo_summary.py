"""summary.md of the main job (scripts/run_demo.py): one table per paper, each finding beside what
the paper reported and whether this run reproduced it, then the measurements behind them.

Only reads the summary dict the steps wrote; a key a step did not write reads "not measured".
The papers' figures come from ../shared/spec/methods.md and the seed documents; the tags say how
each was read ([paper], [review]: a third-party summary, [code]: the authors' released code).
"""

import json
import os
import statistics

NOT_MEASURED = "not measured"
SPREAD_RULE = (
    "a difference of two means is within the seeds' spread when it is smaller than the sum of the two "
    "standard deviations (their mean ± sd ranges overlap)"
)

PAPERS = {
    "ssaf": "Cui et al. 2019, *Fine-tune BERT with Sparse Self-Attention Mechanism* (EMNLP-IJCNLP, D19-1361)",
    "sparsebert": "Shi et al. 2021, *SparseBERT: Rethinking the Importance Analysis in Self-attention* (ICML)",
    "dark": "Kovaleva et al. 2019, *Revealing the Dark Secrets of BERT* (EMNLP, D19-1445)",
}


def _fmt(x, spec=".3f"):
    return NOT_MEASURED if x is None else format(x, spec)


def _values(x):
    """A figure measured once (a number) or per seed (a list) -> list of numbers."""
    if x is None:
        return []
    return [float(v) for v in x] if isinstance(x, (list, tuple)) else [float(x)]


def mean_sd(values, spec=".2f"):
    """'m ± sd' over seeds ('m (1 seed)' for one value)."""
    values = _values(values)
    if not values:
        return NOT_MEASURED
    if len(values) == 1:
        return f"{values[0]:{spec}} (1 seed)"
    return f"{statistics.mean(values):{spec}} ± {statistics.stdev(values):{spec}}"


def compare_arms(a, b):
    """Difference of means a - b and how to read it: 'beyond the spread', 'within the seeds' spread', or
    'spread unknown' when either side has fewer than 2 seeds (SPREAD_RULE)."""
    a, b = _values(a), _values(b)
    if not a or not b:
        return None, NOT_MEASURED
    diff = statistics.mean(a) - statistics.mean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, "spread unknown (1 seed)"
    spread = statistics.stdev(a) + statistics.stdev(b)
    return diff, "within the seeds' spread" if abs(diff) < spread else "beyond the seeds' spread"


def _table(header, rows):
    return (
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        + [""]
    )


def _paper_table(name, rows):
    return [f"### {PAPERS[name]}", ""] + _table(
        ("finding", "what the paper reported", "what this run measured", "reproduced?"), rows
    )


def not_learned(ss, seeds=None):
    """Why no finding can be read off the fine-tuned softmax model (mean test accuracy over `seeds`, all
    when None, not above the majority class), or None when it does its task."""
    majority = (ss.get("majority_baseline") or {}).get("test_accuracy")
    acc = [
        r["test_accuracy"]
        for r in ss.get("runs", [])
        if r["setting"] == "softmax" and (seeds is None or r["seed"] in seeds)
    ]
    if majority is None or not acc or statistics.mean(acc) > majority:
        return None
    return (
        f"not comparable: the fine-tuned softmax model does not beat the majority class "
        f"({statistics.mean(acc):.2f}% vs {majority:.2f}% test accuracy)"
    )


def _unless(reason, rows):
    """rows with each measured verdict replaced by `reason` (when there is one)."""
    return [r[:3] + (reason if reason and r[3] != NOT_MEASURED else r[3],) for r in rows]


# ----- SSAF ---------------------------------------------------------------------------------------
def ssaf_by_setting(ss):
    """{setting: {key: [value per seed]}} from the rows of fairseq_sparse.finetune.compare."""
    out = {}
    for r in ss["runs"]:
        d = out.setdefault(r["setting"], {"seed": []})
        for k, v in r.items():
            if k != "setting":
                d.setdefault(k, []).append(v)
    return out


def _verdict(diff, reading):
    if diff is None:
        return NOT_MEASURED
    if reading.startswith("within"):
        return "within noise"
    if reading.startswith("spread unknown"):
        return "not comparable: one seed, no spread"
    return "yes" if diff > 0 else "no"


def ssaf_rows(ss):
    by = ssaf_by_setting(ss)
    base = by.get("softmax", {}).get("test_accuracy")
    rows = []
    for setting, claim in (
        ("sparsegen_lin_-4", "sparsegen-lin (λ = -4) fine-tuning beats softmax fine-tuning"),
        ("schedule", "sparse attention fine-tuning (here: the alpha 1.05 → 1.5 schedule) beats softmax"),
    ):
        diff, reading = compare_arms(by.get(setting, {}).get("test_accuracy"), base)
        measured = (
            NOT_MEASURED
            if diff is None
            else (
                f"{diff:+.2f} points of test accuracy ({reading}; {mean_sd(by[setting]['test_accuracy'])} vs "
                f"{mean_sd(base)})"
            )
        )
        rows.append(
            (
                claim,
                "higher accuracy than BERT-base on all 7 sets (SST-1/2, SemEval-2013, SenTube-A/T, "
                "SQuAD, SciTail) [review]; the numeric tables were not retrieved",
                measured,
                _verdict(diff, reading) + " (MiniLM on BBC News, not BERT-base on the paper's sets)",
            )
        )
    return rows


def ssaf_section(ss):
    by = ssaf_by_setting(ss)
    seeds = sorted({s for d in by.values() for s in d["seed"]})
    majority = ss.get("majority_baseline") or {}
    out = [
        "## SSAF: sparse attention fine-tuning of a real BERT (MiniLM) on BBC News",
        "",
        f"Articles {ss['bbc_articles']}, first {ss['max_length']} WordPiece tokens, {ss['epochs']} epochs, "
        f"seeds {', '.join(map(str, seeds))} (training seed: data order, dropout, the head's output layer); "
        f"schedule = {ss['schedule']}. Density = non-zero attention weights / real query-key pairs on the test "
        "set. Mean ± standard deviation over the seeds.",
        "",
        f"Can the model do its task? Majority class of the training file ({majority.get('label', '?')}) on the "
        f"test set: {_fmt(majority.get('test_accuracy'), '.2f')}% accuracy.",
        "",
    ]
    base = by.get("softmax", {}).get("test_accuracy")
    rows = []
    for setting, d in by.items():
        diff, reading = compare_arms(d["test_accuracy"], base) if setting != "softmax" else (None, "")
        rows.append(
            (
                setting,
                len(d["seed"]),
                mean_sd(d["valid_accuracy"]),
                mean_sd(d["test_accuracy"]),
                " / ".join(f"{v:.2f}" for v in d["test_accuracy"]),
                "-" if setting == "softmax" else f"{diff:+.2f} ({reading})",
                mean_sd(d["test_attention_density"], ".3f"),
            )
        )
    out += _table(
        (
            "attention",
            "seeds",
            "valid accuracy %",
            "test accuracy %",
            "test accuracy per seed",
            "test accuracy vs softmax",
            "test attention density",
        ),
        rows,
    )
    out += [f"Reading: {SPREAD_RULE}.", ""]
    return out


# ----- SparseBERT ---------------------------------------------------------------------------------
SPARSEBERT_KEYS = {
    "unigram_bits",
    "adapted_valid_bits",
    "adapt_updates",
    "continue_updates",
    "mask",
    "diagonal_keep_prob",
    "diagonal_rank",
    "arms",
}


def sparsebert_rows(sb):
    arms = sb.get("arms") or {}
    rank, keep = sb.get("diagonal_rank"), sb.get("diagonal_keep_prob")
    if rank is None:
        diag_measured, diag_verdict = NOT_MEASURED, NOT_MEASURED
    else:
        diag_measured = f"diagonal keep probability {_fmt(keep)}, rank {rank} (1 = lowest of all distances)"
        diag_verdict = "yes" if rank == 1 else f"no (rank {rank})"
    rows = [
        (
            "the diagonal (a token attending to itself) is the least important position in pre-training",
            "the DAM search gives the diagonal the lowest keep probability; removing it does not hurt GLUE/SQuAD "
            "[paper]",
            diag_measured,
            diag_verdict + " (a short search from a pre-trained MiniLM)" if rank is not None else diag_verdict,
        )
    ]
    for other in ("random", "window"):
        diff, reading = compare_arms(arms.get(other), arms.get("learned"))
        if diff is None:
            measured, verdict = NOT_MEASURED, NOT_MEASURED
        else:
            measured = (
                f"valid MLM bits learned {mean_sd(arms['learned'], '.3f')} vs {other} "
                f"{mean_sd(arms[other], '.3f')}: learned lower by {diff:+.3f} ({reading})"
            )
            verdict = _verdict(diff, reading)
        rows.append(
            (
                f"a mask learned by DAM beats a {other} mask of the same density",
                "the DAM masks outperform fixed sparse patterns (window, random, BigBird, ...) at equal "
                "density on GLUE/SQuAD [paper]; result tables not retrieved",
                measured,
                verdict,
            )
        )
    return rows


def sparsebert_section(sb):
    mask = sb.get("mask") or {}
    arms = sb.get("arms") or {}
    out = [
        "## SparseBERT: a Differentiable Attention Mask learned on Wikipedia text",
        "",
        "Every arm continues from the same adapted weights with the same updates (lower bits are better).",
        "",
    ]
    rows = [
        ("unigram entropy of the valid masked targets (bits)", _fmt(sb.get("unigram_bits"))),
        (
            f"adapted MiniLM, valid MLM bits ({sb.get('adapt_updates', '?')} dense updates)",
            _fmt(sb.get("adapted_valid_bits")),
        ),
        ("learned mask density", _fmt(mask.get("density"))),
        ("learned mask: empty rows", mask.get("empty_rows", NOT_MEASURED)),
        (
            "diagonal keep probability (rank among distances)",
            f"{_fmt(sb.get('diagonal_keep_prob'))} ({sb.get('diagonal_rank', NOT_MEASURED)})",
        ),
    ]
    rows += [
        (f"valid MLM bits after {sb.get('continue_updates', '?')} more updates: {arm}", mean_sd(arms.get(arm), ".3f"))
        for arm in ("dense", "learned", "random", "window")
    ]
    rows += [(k, json.dumps(v)) for k, v in sb.items() if k not in SPARSEBERT_KEYS and not isinstance(v, (dict, list))]
    out += _table(("", "value"), rows)
    if mask.get("png"):
        out += [f"![learned mask per head]({mask['png']})", ""]
    return out


# ----- Dark Secrets -------------------------------------------------------------------------------
def dark_rows(an):
    shares = an.get("pattern_share_overall") or {}
    het = shares.get("heterogeneous")
    pattern = NOT_MEASURED if het is None else ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())
    pattern_verdict = (
        NOT_MEASURED
        if het is None
        else (
            ("yes" if 0.32 <= het <= 0.61 else "no") + f": heterogeneous {100 * het:.0f}% (rule-based classes, not the "
            "paper's CNN; one sentence per example, so no block class)"
        )
    )
    ab = an.get("ablation") or {}
    improving = ab.get("heads_improving_beyond_interval")
    if improving is None:
        ablate, ablate_verdict = NOT_MEASURED, NOT_MEASURED
    else:
        ablate = (
            f"{improving} of {ab['heads']} heads raise the mean {ab['per_example_metric']} beyond its "
            f"{ab['confidence']:.0%} bootstrap interval when disabled ({ab['heads_hurting_beyond_interval']} "
            f"lower it); {ab['heads_improving_metric']} raise {ab['metric']} on {ab['examples']} examples"
        )
        ablate_verdict = "yes" if improving else ("within noise" if ab["heads_improving_metric"] else "no")
    special = an.get("special_token_attention_per_layer") or {}
    cls, sep = special.get("cls"), special.get("sep")
    if cls is None or sep is None:
        tokens, tokens_verdict = NOT_MEASURED, NOT_MEASURED
    else:
        half = len(cls) // 2
        early = sum(c > s for c, s in zip(cls[:half], sep[:half]))
        late = sum(s > c for c, s in zip(cls[half:], sep[half:]))
        row = an.get("last_layer_cls_row") or {}
        target = max(row, key=row.get) if row else None
        tokens = (
            f"[CLS] > [SEP] in {early} of the first {half} layers, [SEP] > [CLS] in {late} of the last "
            f"{len(cls) - half}"
            + (f"; the last layer's [CLS] row goes mostly to {target} ({row[target]:.2f})" if target else "")
        )
        tokens_verdict = "yes" if early == half and late == len(cls) - half and target in (None, "sep") else "no"
        if an.get("examples_with_sep") == 0:
            tokens_verdict = "not comparable: the truncated articles have no [SEP]"
    drift = (an.get("drift") or {}).get("per_layer_cosine")
    if drift is None:
        change, change_verdict = NOT_MEASURED, NOT_MEASURED
    else:
        lowest = sorted(range(len(drift)), key=lambda i: drift[i])[:2]
        change = (
            f"cosine per layer {' / '.join(f'{c:.3f}' for c in drift)}; most changed: layers "
            f"{', '.join(str(i + 1) for i in sorted(lowest))}"
        )
        change_verdict = "yes" if sorted(lowest) == [len(drift) - 2, len(drift) - 1] else "no"
    return [
        (
            "a few attention patterns repeat across heads",
            "5 classes; heterogeneous 32% (MRPC) to 61% (QQP) of the maps [review]",
            pattern,
            pattern_verdict,
        ),
        (
            "disabling some single heads improves the fine-tuned model",
            "for every GLUE task some head's removal improves the score [review]",
            ablate,
            ablate_verdict,
        ),
        (
            "[CLS] and [SEP] draw the attention",
            "early layers attend to [CLS], later ones to [SEP]; the last "
            "layer's [CLS] attends mostly to [SEP] [review]",
            tokens,
            tokens_verdict,
        ),
        (
            "fine-tuning changes the last layers most",
            "the last two layers change most (cosine of the maps, pre-trained vs fine-tuned) [review]",
            change,
            change_verdict,
        ),
    ]


def dark_section(an):
    special = an["special_token_attention_per_layer"]
    n_layers = len(next(iter(special.values())))
    ab, dr = an["ablation"], an["drift"]
    layers = [f"L{i + 1}" for i in range(n_layers)]
    out = [
        "## Dark Secrets of BERT: the softmax fine-tuned model (seed 1)",
        "",
        "Pattern classes of the attention maps (% of maps per layer):",
        "",
        an["pattern_table"],
        "",
        "Attention to special tokens (mean per layer):",
        "",
    ]
    out += _table(["token", *layers], [(k, *(f"{v:.3f}" for v in vals)) for k, vals in special.items()])
    worst = ", ".join(f"L{d['layer']}H{d['head']} {d['delta']:+.3f}" for d in ab["most_harmful_heads"])
    out += [
        f"Head ablation on all {ab['examples']} test articles (a head's attention replaced by uniform weights, "
        f"no retraining): intact {ab['metric']} {ab['intact_score']:.4f}, mean {ab['per_example_metric']} "
        f"{ab['intact_per_example_mean']:.4f}. Per head, the change of the mean {ab['per_example_metric']} with "
        f"a paired bootstrap interval ({ab['resamples']} resamples over the examples, {ab['confidence']:.0%}): "
        f"{ab['heads_improving_beyond_interval']} heads improve it beyond the interval, "
        f"{ab['heads_hurting_beyond_interval']} lower it beyond the interval; largest drops: {worst}.",
        "",
    ]
    intervals = [
        f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, (lo, hi) in zip(ab["layer_per_example_delta"], ab["layer_interval"])
    ]
    out += _table(
        ["", *layers],
        [
            (f"change of the mean {ab['per_example_metric']}, whole layer disabled [interval]", *intervals),
            (f"change of {ab['metric']}, whole layer disabled", *(f"{d:+.3f}" for d in ab["layer_delta"])),
            ("drift: cosine of the maps, pre-trained vs fine-tuned", *(f"{c:.3f}" for c in dr["per_layer_cosine"])),
        ],
    )
    out += [f"![{os.path.basename(p)}]({p})" for p in an["pictures"]] + [""]
    return out


def paper_tables(s):
    """One table per paper: finding | what the paper reported | what this run measured | reproduced?"""
    out = [
        "## Each paper beside this run",
        "",
        "The papers used BERT-base on their own data; this run uses the 6-layer MiniLM on the CPU, so "
        '"reproduced" means the same direction at this scale. ' + SPREAD_RULE[0].upper() + SPREAD_RULE[1:] + ".",
        "",
    ]
    ss = s.get("ssaf") or {}
    out += _paper_table(
        "ssaf",
        _unless(not_learned(ss), ssaf_rows(ss)) if ss else [("gain over softmax", "-", NOT_MEASURED, NOT_MEASURED)],
    )
    out += _paper_table("sparsebert", sparsebert_rows(s.get("sparsebert") or {}))
    out += _paper_table("dark", _unless(not_learned(ss, seeds=[1]), dark_rows(s.get("analysis") or {})))
    return out


def summary_markdown(s):
    """The results as tables, pictures linked (paths relative to the summary)."""
    out = [
        "# fairseq_sparse demo: results",
        "",
        f"Budgets: `{json.dumps(s['budget'])}`; step times (s): `{json.dumps(s.get('seconds', {}))}`",
        "",
    ]
    out += paper_tables(s)
    if s.get("sparsebert"):
        out += sparsebert_section(s["sparsebert"])
    if s.get("ssaf"):
        out += ssaf_section(s["ssaf"])
    if s.get("analysis"):
        out += dark_section(s["analysis"])
    return "\n".join(out)
