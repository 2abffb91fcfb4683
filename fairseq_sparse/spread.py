"""Seeded arms read with their spread: mean +- sd over seeds, and whether two arms' difference is
larger than that spread. One rule for every table that compares arms (the demo's summary, the
fine-tune comparisons, the SparseBERT reproduction), so none can read noise as a win.
"""

import statistics

NOT_MEASURED = "not measured"
SPREAD_RULE = (
    "a difference of two means is within the seeds' spread when it is smaller than the sum of the two "
    "standard deviations (their mean ± sd ranges overlap)"
)


def seed_values(x):
    """A figure measured once (a number) or per seed (a list; None entries dropped) -> list of floats."""
    if x is None:
        return []
    return [float(v) for v in x if v is not None] if isinstance(x, (list, tuple)) else [float(x)]


def summarize(values, digits=4):
    """{'mean', 'sd', 'n'} over seeds (sample sd; None for one value), or None when nothing was measured."""
    values = seed_values(values)
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {
        "mean": round(statistics.mean(values), digits),
        "sd": None if sd is None else round(sd, digits),
        "n": len(values),
    }


def mean_sd(values, spec=".2f"):
    """'m ± sd' over seeds ('m (1 seed)' for one value, NOT_MEASURED for none)."""
    values = seed_values(values)
    if not values:
        return NOT_MEASURED
    if len(values) == 1:
        return f"{values[0]:{spec}} (1 seed)"
    return f"{statistics.mean(values):{spec}} ± {statistics.stdev(values):{spec}}"


def compare_arms(a, b):
    """Difference of means a - b and how to read it (SPREAD_RULE): 'beyond the seeds' spread',
    'within the seeds' spread', or 'spread unknown (1 seed)' when either side has one seed."""
    a, b = seed_values(a), seed_values(b)
    if not a or not b:
        return None, NOT_MEASURED
    diff = statistics.mean(a) - statistics.mean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, "spread unknown (1 seed)"
    spread = statistics.stdev(a) + statistics.stdev(b)
    return diff, "within the seeds' spread" if abs(diff) < spread else "beyond the seeds' spread"
