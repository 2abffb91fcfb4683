"""Classification scores a user of imbalanced data needs beside accuracy (pure Python).

Accuracy alone flatters a model on skewed classes: always answering the majority class can
score high. So every split gets its class counts, macro-F1 and per-class precision, recall and
F1, and the majority-class baseline (the most frequent training label, predicted for every
example) is scored the same way. Figures are percentages, like fairseq's accuracy.
"""

from collections import Counter


def class_counts(labels, names):
    """{name: examples} in class order (0 for a class absent from `labels`)."""
    counts = Counter(labels)
    return {name: counts.get(name, 0) for name in names}


def classification_scores(gold, predicted, names):
    """{accuracy, macro_f1, per_class: {name: {precision, recall, f1, support}}} from class indices.

    macro_f1 averages the F1 of the classes that occur in `gold` or `predicted` (as scikit-learn
    does); a class absent from both has f1 None. A class never predicted has precision 0.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        raise ValueError("no examples to score")
    per_class, f1s = {}, []
    for k, name in enumerate(names):
        tp = sum(1 for g, p in zip(gold, predicted) if g == k and p == k)
        n_gold = sum(1 for g in gold if g == k)
        n_pred = sum(1 for p in predicted if p == k)
        precision = 100.0 * tp / n_pred if n_pred else 0.0
        recall = 100.0 * tp / n_gold if n_gold else 0.0
        f1 = None
        if n_gold or n_pred:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            f1s.append(f1)
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": n_gold}
    correct = sum(1 for g, p in zip(gold, predicted) if g == p)
    return {"accuracy": 100.0 * correct / len(gold), "macro_f1": sum(f1s) / len(f1s), "per_class": per_class}


def majority_baseline(train_counts, gold_by_split, names):
    """The most frequent training class (train_counts: {name: examples}; ties: the first in class
    order) predicted for every example: {"label", split: {accuracy, macro_f1}} per split of class indices."""
    majority = max(range(len(names)), key=lambda k: (train_counts.get(names[k], 0), -k))
    out = {"label": names[majority]}
    for split, gold in gold_by_split.items():
        scores = classification_scores(gold, [majority] * len(gold), names)
        out[split] = {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}
    return out
