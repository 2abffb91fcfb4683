"""Dev-set scores of a classifier (the task metrics of GLUE) and agreement between two labelings.

Plain torch, so the package needs no scikit-learn. Scores are fractions in [0, 1] (or
correlations in [-1, 1]); a head-removal effect is the difference of two such scores.
"""

import torch

CLASSIFICATION_METRICS = ("accuracy", "f1", "macro_f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman")
METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS


def default_metric(regression):
    return "pearson" if regression else "accuracy"


def check_metric(metric, regression):
    allowed = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    if metric not in allowed:
        kind = "regression" if regression else "classification"
        raise ValueError(f"--metric {metric!r} does not apply to a {kind} head; expected one of {allowed}")


def _confusion(pred, gold, n):
    m = torch.zeros(n, n, dtype=torch.float64)
    m.index_put_((gold.long(), pred.long()), torch.ones_like(gold, dtype=torch.float64), accumulate=True)
    return m


def confusion_counts(gold, pred, n):
    """n x n counts as nested lists: row = gold class, column = predicted class."""
    gold, pred = torch.as_tensor(gold).reshape(-1), torch.as_tensor(pred).reshape(-1)
    return _confusion(pred, gold, n).long().tolist()


def _f1_of_class(conf, k):
    tp = conf[k, k]
    precision = tp / conf[:, k].sum() if conf[:, k].sum() > 0 else torch.tensor(0.0)
    recall = tp / conf[k, :].sum() if conf[k, :].sum() > 0 else torch.tensor(0.0)
    return float(2 * precision * recall / (precision + recall)) if precision + recall > 0 else 0.0


def _pearson(x, y):
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = x.norm() * y.norm()
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def _ranks(x):
    """Average ranks (ties share their mean rank), as Spearman's rho needs."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    values = x[order]
    start = 0
    for i in range(1, len(x) + 1):
        if i == len(x) or values[i] != values[start]:
            ranks[order[start:i]] = (start + i - 1) / 2.0
            start = i
    return ranks


def score(metric, outputs, gold):
    """metric of logits (classification: (N, C)) or predictions (regression: (N,) or (N, 1)) against gold."""
    if metric in REGRESSION_METRICS:
        pred = outputs.reshape(-1).double()
        gold = gold.reshape(-1).double()
        return _pearson(pred, gold) if metric == "pearson" else _pearson(_ranks(pred), _ranks(gold))
    pred = outputs.argmax(dim=-1).reshape(-1)
    gold = gold.reshape(-1)
    if metric == "accuracy":
        return float((pred == gold).double().mean())
    n = max(int(outputs.shape[-1]), int(gold.max()) + 1)
    conf = _confusion(pred, gold, n)
    if metric == "f1":
        if n != 2:
            raise ValueError(f"--metric f1 is binary F1 of class 1; this head has {n} classes (use macro_f1)")
        return _f1_of_class(conf, 1)
    if metric == "macro_f1":
        return sum(_f1_of_class(conf, k) for k in range(n)) / n
    if metric == "mcc":  # multi-class Matthews correlation (Gorodkin 2004)
        t, p, c, s = conf.sum(1), conf.sum(0), conf.trace(), conf.sum()
        denom = ((s * s - (p * p).sum()) * (s * s - (t * t).sum())).sqrt()
        return float((c * s - (t * p).sum()) / denom) if denom > 0 else 0.0
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


def per_example(outputs, gold, regression):
    """(N,) float64 score of every example that moves with any change of the outputs, higher is better:
    the log-probability of the gold label (classification) or minus the squared error (regression).

    Accuracy on a few hundred examples moves in steps of 1/N, so disabling one head rarely changes
    it; the mean of these values does."""
    if regression:
        return -((outputs.reshape(-1).double() - gold.reshape(-1).double()) ** 2)
    logp = torch.log_softmax(outputs.double(), dim=-1)
    return logp.gather(-1, gold.reshape(-1, 1).long()).squeeze(-1)


def per_example_name(regression):
    return "neg_squared_error" if regression else "gold_logprob"


def loss(outputs, gold, regression):
    """Mean cross-entropy (classification) or squared error (regression): a tie-breaker finer than accuracy."""
    if regression:
        return float(((outputs.reshape(-1).double() - gold.reshape(-1).double()) ** 2).mean())
    return float(torch.nn.functional.cross_entropy(outputs.double(), gold.reshape(-1).long()))


def accuracy(a, b):
    a, b = torch.as_tensor(a).reshape(-1), torch.as_tensor(b).reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"label lists differ in length: {len(a)} vs {len(b)}")
    return float((a == b).double().mean()) if len(a) else float("nan")


def cohen_kappa(a, b, n_classes=None):
    """Cohen's kappa: agreement of two labelings corrected for the agreement their class shares give by chance."""
    a, b = torch.as_tensor(a).reshape(-1).long(), torch.as_tensor(b).reshape(-1).long()
    if len(a) != len(b):
        raise ValueError(f"label lists differ in length: {len(a)} vs {len(b)}")
    if not len(a):
        return float("nan")
    n = n_classes or int(max(a.max(), b.max())) + 1
    conf = _confusion(b, a, n) / len(a)
    observed = conf.trace()
    expected = (conf.sum(0) * conf.sum(1)).sum()
    if expected >= 1:
        return 1.0 if observed >= 1 else 0.0
    return float((observed - expected) / (1 - expected))
