"""The per-paper finding tables of the demo's summary.md (scripts/demo_summary.py assembles the
page): each finding beside what the paper reported, what this run measured and whether it reproduced,
read with the seeds' spread (fairseq_sparse/spread.py).

A split of demo_summary.py by idea: the verdicts live here, the measurement sections there.
The papers' figures come from ../shared/spec/methods.md and the seed documents; the tags say how
each was read ([paper], [review]: a third-party summary, [code]: the authors' released code).
"""

import statistics

from fairseq_sparse.spread import NOT_MEASURED, SPREAD_RULE, compare_arms, mean_sd

PAPERS = {
    "ssaf": "Cui et al. 2019, *Fine-tune BERT with Sparse Self-Attention Mechanism* (EMNLP-IJCNLP, D19-1361)",
    "sparsebert": "Shi et al. 2021, *SparseBERT: Rethinking the Importance Analysis in Self-attention* (ICML)",
    "dark": "Kovaleva et al. 2019, *Revealing the Dark Secrets of BERT* (EMNLP, D19-1445)",
}


def fmt(x, spec=".3f"):
    return NOT_MEASURED if x is None else format(x, spec)


def table(header, rows):
    return (
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        + [""]
    )


def _paper_table(name, rows):
    return [f"### {PAPERS[name]}", ""] + table(
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
    for setting, claim in (("sparsegen_lin_-4", "sparsegen-lin (λ = -4) fine-tuning beats softmax fine-tuning"),):
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


# ----- SparseBERT ---------------------------------------------------------------------------------
def sparsebert_rows(sb):
    arms = sb.get("arms") or {}
    rank, keep = sb.get("diagonal_rank"), sb.get("diagonal_keep_prob")
    if rank is None:
        diag_measured, diag_verdict = NOT_MEASURED, NOT_MEASURED
    else:
        diag_measured = f"diagonal keep probability {fmt(keep)}, rank {rank} (1 = lowest of all distances)"
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
                f"{mean_sd(arms[other], '.3f')}: {other} - learned = {diff:+.3f} bits (> 0: learned better; {reading})"
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


# ----- Dark Secrets -------------------------------------------------------------------------------
def dark_rows(an):
    shares = an.get("pattern_share_overall") or {}
    het = shares.get("heterogeneous")
    pattern = NOT_MEASURED if het is None else ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())
    pattern_verdict = (
        NOT_MEASURED
        if het is None
        else (
            ("yes" if 0.32 <= het <= 0.61 else "no")
            + f": heterogeneous {100 * het:.1f}% (the paper: 32-61%; rule-based classes, not the "
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
