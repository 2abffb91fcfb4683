"""SQuAD exact match and F1 as the official v1.1 / v2.0 evaluation scripts define them.

Answers are compared after normalisation (lower case, no punctuation, no articles a/an/the,
single spaces). F1 is over the bag of normalised tokens. A question counts against every
gold answer and keeps its best score. A question without gold answers (v2.0) has the single
gold answer "", so only an empty prediction scores. With no-answer probabilities, a
prediction whose probability exceeds the threshold counts as "", and the best threshold is
searched as the v2.0 script does.
"""

import collections
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text):
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(gold, pred):
    return int(normalize_answer(gold) == normalize_answer(pred))


def f1_score(gold, pred):
    gold_toks = normalize_answer(gold).split()
    pred_toks = normalize_answer(pred).split()
    if not gold_toks or not pred_toks:  # no-answer: right only if both are empty
        return float(gold_toks == pred_toks)
    same = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def gold_answers(answers):
    """Gold answer texts that survive normalisation; [""] for an unanswerable question."""
    kept = [a for a in answers if normalize_answer(a)]
    return kept or [""]


def _best_threshold(scores, preds, na_probs, has_answer):
    """(best score in %, threshold): abstain on every question whose no-answer prob exceeds it."""
    score = best = sum(1 for q in scores if not has_answer[q])
    thresh = 0.0
    for q in sorted(scores, key=lambda q: na_probs[q]):
        if has_answer[q]:
            score += scores[q]
        elif preds[q]:
            score -= 1
        if score > best:
            best, thresh = score, na_probs[q]
    return 100.0 * best / len(scores), thresh


def evaluate(gold, preds, na_probs=None, na_prob_thresh=1.0):
    """gold: {qid: [answer texts]} ([] if unanswerable); preds: {qid: text}.

    Returns the official summary: exact, f1, total, HasAns_*/NoAns_* when both kinds exist,
    and best_exact(_thresh)/best_f1(_thresh) when na_probs is given.
    """
    missing = [q for q in gold if q not in preds]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction, e.g. {missing[:3]}")
    exact, f1, has_answer = {}, {}, {}
    for qid, answers in gold.items():
        golds = gold_answers(answers)
        has_answer[qid] = golds != [""]
        exact[qid] = max(exact_match(g, preds[qid]) for g in golds)
        f1[qid] = max(f1_score(g, preds[qid]) for g in golds)
    raw_exact, raw_f1 = dict(exact), dict(f1)
    if na_probs is not None:
        for qid in gold:
            if na_probs[qid] > na_prob_thresh:
                exact[qid] = f1[qid] = float(not has_answer[qid])
    out = _summary(exact, f1, gold)
    has = [q for q in gold if has_answer[q]]
    no = [q for q in gold if not has_answer[q]]
    if has and no:
        for prefix, qids in (("HasAns", has), ("NoAns", no)):
            for k, v in _summary(exact, f1, qids).items():
                out[f"{prefix}_{k}"] = v
    if na_probs is not None:
        out["best_exact"], out["best_exact_thresh"] = _best_threshold(raw_exact, preds, na_probs, has_answer)
        out["best_f1"], out["best_f1_thresh"] = _best_threshold(raw_f1, preds, na_probs, has_answer)
    return out


def _summary(exact, f1, qids):
    n = len(qids)
    return {
        "exact": 100.0 * sum(exact[q] for q in qids) / n if n else 0.0,
        "f1": 100.0 * sum(f1[q] for q in qids) / n if n else 0.0,
        "total": n,
    }


def gold_from_squad_json(data):
    """{qid: [answer texts]} from a parsed official SQuAD JSON (v1.1 or v2.0)."""
    gold = {}
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                gold[qa["id"]] = [] if qa.get("is_impossible") else [a["text"] for a in qa["answers"]]
    return gold
