"""summary.md of the main job (scripts/run_demo.py): one table per paper, each finding beside what
the paper reported and whether this run reproduced it, then the measurements behind them.

Only reads the summary dict the steps wrote; a key a step did not write reads "not measured".
This module assembles the page and writes the measurement sections; the per-paper finding tables
and the reading rules are in scripts/demo_paper_tables.py (re-exported here for the callers).
"""

import json
import os

from demo_paper_tables import (
    NOT_MEASURED,
    PAPERS,
    SPREAD_RULE,
    compare_arms,
    dark_rows,
    fmt,
    mean_sd,
    not_learned,
    paper_tables,
    sparsebert_rows,
    ssaf_by_setting,
    ssaf_rows,
    table,
)

from fairseq_sparse.finetune.compare import arms_table

__all__ = [
    "NOT_MEASURED",
    "PAPERS",
    "SPREAD_RULE",
    "compare_arms",
    "dark_rows",
    "dark_section",
    "mean_sd",
    "not_learned",
    "paper_tables",
    "sparsebert_rows",
    "sparsebert_section",
    "ssaf_by_setting",
    "ssaf_rows",
    "ssaf_section",
    "summary_markdown",
]


def ssaf_section(ss):
    by = ssaf_by_setting(ss)
    seeds = sorted({s for d in by.values() for s in d["seed"]})
    majority = ss.get("majority_baseline") or {}
    out = [
        "## SSAF: sparse attention fine-tuning of a real BERT (MiniLM) on BBC News",
        "",
        f"Articles {ss['bbc_articles']}, first {ss['max_length']} WordPiece tokens, {ss['epochs']} epochs, "
        f"seeds {', '.join(map(str, seeds))} (training seed: data order, dropout, the head's output layer). "
        "Density = non-zero attention weights / real query-key pairs on the test set. Mean ± standard "
        "deviation over the seeds.",
        "",
        f"Can the model do its task? Majority class of the training file ({majority.get('label', '?')}) on the "
        f"test set: {fmt(majority.get('test_accuracy'), '.2f')}% accuracy.",
        "",
    ]
    return out + arms_table(ss["runs"]) + ["", f"Reading: {SPREAD_RULE}.", ""]


# ----- SparseBERT ---------------------------------------------------------------------------------
SPARSEBERT_KEYS = {
    "unigram_bits",
    "adapted_valid_bits",
    "adapt_updates",
    "continue_updates",
    "search_updates",
    "diagonal_png",
    "mask",
    "diagonal_keep_prob",
    "diagonal_rank",
    "arms",
}


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
        ("unigram entropy of the valid masked targets (bits)", fmt(sb.get("unigram_bits"))),
        (
            f"adapted MiniLM, valid MLM bits ({sb.get('adapt_updates', '?')} dense updates)",
            fmt(sb.get("adapted_valid_bits")),
        ),
        (f"learned mask density (after {sb.get('search_updates', '?')} search updates)", fmt(mask.get("density"))),
        ("learned mask: empty rows", mask.get("empty_rows", NOT_MEASURED)),
        (
            "diagonal keep probability (rank among distances)",
            f"{fmt(sb.get('diagonal_keep_prob'))} ({sb.get('diagonal_rank', NOT_MEASURED)})",
        ),
    ]
    rows += [
        (f"valid MLM bits after {sb.get('continue_updates', '?')} more updates: {arm}", mean_sd(arms.get(arm), ".3f"))
        for arm in ("dense", "learned", "random", "window")
    ]
    rows += [(k, json.dumps(v)) for k, v in sb.items() if k not in SPARSEBERT_KEYS and not isinstance(v, (dict, list))]
    out += table(("", "value"), rows)
    if mask.get("png"):
        out += [f"![learned mask per head]({mask['png']})", ""]
    if sb.get("diagonal_png"):
        out += [f"![keep probability per distance over the search]({sb['diagonal_png']})", ""]
    return out


# ----- Dark Secrets -------------------------------------------------------------------------------
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
    out += table(["token", *layers], [(k, *(f"{v:.3f}" for v in vals)) for k, vals in special.items()])
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
    out += table(
        ["", *layers],
        [
            (f"change of the mean {ab['per_example_metric']}, whole layer disabled [interval]", *intervals),
            (f"change of {ab['metric']}, whole layer disabled", *(f"{d:+.3f}" for d in ab["layer_delta"])),
            ("drift: cosine of the maps, pre-trained vs fine-tuned", *(f"{c:.3f}" for c in dr["per_layer_cosine"])),
        ],
    )
    out += [f"![{os.path.basename(p)}]({p})" for p in an["pictures"]] + [""]
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
