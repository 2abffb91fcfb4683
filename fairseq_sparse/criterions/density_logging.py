"""The attention statistics through fairseq's reduction, as examples/adaptive_span does: each
criterion puts the model's counts of its forward in logging_output, and reduce_metrics turns the
sums (over batches, --update-freq and workers) into attn_density_l<i> = nonzero / pairs and
attn_support_l<i> = nonzero / rows (modules/attention_stats.py defines the counts)."""

from fairseq.logging import metrics

COUNTS = ("nonzero", "pairs", "rows")
PREFIX = "attn_count_"  # logging_output keys: attn_count_<count>_l<layer>


def attention_counts(model):
    """{attn_count_<count>_l<layer>: float64 tensor} for the layers that took counts in this forward."""
    per_layer = getattr(model, "attention_density_counts", None)  # absent on stock RoBERTa
    out = {}
    for layer, counts in enumerate(per_layer() if per_layer is not None else []):
        if counts is not None:
            for name in COUNTS:
                out[f"{PREFIX}{name}_l{layer}"] = getattr(counts, name).sum()  # over heads
    return out


def reduce_attention_counts(logging_outputs):
    """Log attn_density_l* and attn_support_l* from the summed counts, weighted so that an
    epoch's figure is its total nonzero over its total pairs (rows)."""
    prefix = f"{PREFIX}pairs_l"
    layers = sorted({int(k[len(prefix) :]) for log in logging_outputs for k in log if k.startswith(prefix)})
    for layer in layers:
        nonzero, pairs, rows = (
            sum(log.get(f"{PREFIX}{name}_l{layer}", 0) for log in logging_outputs) for name in COUNTS
        )
        if pairs > 0:
            metrics.log_scalar(f"attn_density_l{layer}", nonzero / pairs, pairs, round=4)
            metrics.log_scalar(f"attn_support_l{layer}", nonzero / rows, rows, round=2)
