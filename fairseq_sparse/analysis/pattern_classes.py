"""Rule-based classes of attention maps: vertical, diagonal, vertical+diagonal, block, heterogeneous.

Kovaleva et al. labelled about 400 maps by eye and trained a CNN; neither is public. These rules
classify a map from three measured quantities, each a mean over the map's query rows:

  V  vertical mass: weight on [CLS] and [SEP] keys (the special-token columns)
  D  diagonal mass: weight on the keys at `offsets` from the query (default the previous and the
     next token, -1 and +1), counting only non-special keys so that V and D never overlap
  B  block share (sentence pairs only): of the weight a content query puts on content keys, the
     share inside its own sentence

and these thresholds (all overridable, defaults in PatternThresholds), tried in this order:

  vertical           V >= vertical          and D < minor
  diagonal           D >= diagonal          and V < minor
  vertical+diagonal  V >= minor, D >= minor and V + D >= mixed
  block              B >= block            (pairs only: one sentence has no blocks)
  heterogeneous      everything else
"""

from dataclasses import dataclass, fields

import torch

from .examples import CLS, PUNCT, SEP, segment_ids

CLASSES = ("vertical", "diagonal", "vertical+diagonal", "block", "heterogeneous")
VERTICAL, DIAGONAL, VERTICAL_DIAGONAL, BLOCK, HETEROGENEOUS = range(len(CLASSES))
SHORT_NAMES = {
    "v": "vertical",
    "d": "diagonal",
    "vd": "vertical+diagonal",
    "v+d": "vertical+diagonal",
    "b": "block",
    "h": "heterogeneous",
}


@dataclass
class PatternThresholds:
    vertical: float = 0.5
    diagonal: float = 0.5
    minor: float = 0.15
    mixed: float = 0.5
    block: float = 0.8
    offsets: tuple = (-1, 1)

    def __post_init__(self):
        for f in fields(self):
            if f.name == "offsets":
                continue
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"pattern threshold {f.name}={value} must be in [0, 1]")
        if not self.offsets or any(not isinstance(o, int) for o in self.offsets):
            raise ValueError(f"diagonal offsets must be a non-empty list of integers, got {self.offsets!r}")


def class_index(name):
    """A class name or short code (v, d, vd, b, h) -> index; ValueError naming the bad label."""
    key = str(name).strip().lower()
    key = SHORT_NAMES.get(key, key)
    if key not in CLASSES:
        raise ValueError(f"unknown pattern label {name!r}; expected one of {CLASSES} or {sorted(SHORT_NAMES)}")
    return CLASSES.index(key)


def map_features(maps, types, offsets=(-1, 1)):
    """Features of maps (..., L, L) over one example whose token types (L,) are given.

    Returns {name: tensor (...)}: vertical, cls, sep, diagonal, self, punct and block (NaN when the
    example is a single sentence).
    """
    types = types.to(maps.device)
    n = maps.shape[-1]
    special = (types == CLS) | (types == SEP)
    content = ~special
    out = {
        "vertical": maps[..., special].sum(-1).mean(-1) if special.any() else maps.new_zeros(maps.shape[:-2]),
        "cls": (maps * (types == CLS)).sum(-1).mean(-1),
        "sep": (maps * (types == SEP)).sum(-1).mean(-1),
        "punct": (maps * (types == PUNCT)).sum(-1).mean(-1),
        "self": torch.diagonal(maps, dim1=-2, dim2=-1).sum(-1) / n,
    }
    diagonal = maps.new_zeros(maps.shape[:-2])
    for o in offsets:
        if abs(o) >= n:
            continue
        weights = torch.diagonal(maps, offset=o, dim1=-2, dim2=-1)  # A[i, i + o]
        keys = torch.arange(max(o, 0), n + min(o, 0), device=maps.device)
        diagonal = diagonal + (weights * content[keys]).sum(-1)
    out["diagonal"] = diagonal / n
    seg = segment_ids(types).to(maps.device)
    if len(torch.unique(seg[content])) >= 2:
        same = (seg[:, None] == seg[None, :]) & content[None, :]
        rows = maps[..., content, :]
        within = (rows * same[content]).sum(-1)
        total = (rows * content).sum(-1)
        share = torch.where(total > 1e-6, within / total.clamp(min=1e-12), torch.full_like(total, float("nan")))
        out["block"] = torch.nanmean(share, dim=-1)
    else:
        out["block"] = torch.full(maps.shape[:-2], float("nan"), device=maps.device)
    return out


def classify(features, thresholds=None):
    """Class index tensor (same shape as the features) by the rules in the module docstring."""
    t = thresholds or PatternThresholds()
    v, d, b = features["vertical"], features["diagonal"], features["block"]
    out = torch.full(v.shape, HETEROGENEOUS, dtype=torch.long, device=v.device)
    block = torch.nan_to_num(b, nan=-1.0) >= t.block
    mixed = (v >= t.minor) & (d >= t.minor) & (v + d >= t.mixed)
    diagonal = (d >= t.diagonal) & (v < t.minor)
    vertical = (v >= t.vertical) & (d < t.minor)
    # later assignments win: the order below is the reverse of the documented priority
    out[block] = BLOCK
    out[mixed] = VERTICAL_DIAGONAL
    out[diagonal] = DIAGONAL
    out[vertical] = VERTICAL
    return out


class PatternCounter:
    """Per (layer, head) class counts over examples, and the mean features."""

    def __init__(self, layers, heads, thresholds=None):
        self.thresholds = thresholds or PatternThresholds()
        self.counts = torch.zeros(layers, heads, len(CLASSES), dtype=torch.long)
        self.feature_sums = {}
        self.feature_counts = {}
        self.examples = 0

    def update(self, maps, types):
        feats = map_features(maps, types, self.thresholds.offsets)
        labels = classify(feats, self.thresholds)
        self.counts.scatter_add_(-1, labels.cpu().unsqueeze(-1), torch.ones_like(labels.cpu()).unsqueeze(-1))
        for name, value in feats.items():
            value = value.double().cpu()
            ok = ~torch.isnan(value)
            self.feature_sums[name] = self.feature_sums.get(name, 0) + torch.where(ok, value, 0.0)
            self.feature_counts[name] = self.feature_counts.get(name, 0) + ok.double()
        self.examples += 1
        return labels, feats

    def mean_features(self):
        return {k: self.feature_sums[k] / self.feature_counts[k] for k in self.feature_sums}

    def shares(self):
        """Class shares over all maps: per layer (layers, classes) and overall (classes,)."""
        per_layer = self.counts.sum(1).double()
        return per_layer / per_layer.sum(-1, keepdim=True).clamp(min=1), per_layer.sum(0) / per_layer.sum().clamp(min=1)

    def majority(self):
        """Each head's most frequent class (ties go to the earlier class in CLASSES)."""
        return self.counts.argmax(-1)


def shares_table(per_layer, overall):
    """A Markdown table of class shares (percent) per layer and overall."""
    lines = ["| layer | " + " | ".join(CLASSES) + " |", "|---" * (len(CLASSES) + 1) + "|"]
    for i, row in enumerate(per_layer.tolist()):
        lines.append(f"| {i + 1} | " + " | ".join(f"{100 * x:.1f}" for x in row) + " |")
    lines.append("| all | " + " | ".join(f"{100 * x:.1f}" for x in overall.tolist()) + " |")
    return "\n".join(lines)


def calibration_grid():
    """Threshold sets tried when fitting the rules to hand labels (block and offsets stay as given)."""
    steps = [round(0.05 * i, 2) for i in range(1, 13)]  # 0.05 .. 0.6
    return [
        dict(vertical=v, diagonal=d, minor=m, mixed=x)
        for v in steps
        if v >= 0.2
        for d in steps
        if d >= 0.1
        for m in steps
        if m <= 0.3
        for x in steps
        if x >= 0.2 and m < min(v, d)
    ]


def calibrate(features, labels, base=None, folds=5, seed=1):
    """Thresholds that best reproduce hand labels (Cohen's kappa), and an honest k-fold estimate.

    features: {vertical, diagonal, block: tensor (N,)} of the labelled maps; labels: class indices.
    Returns (thresholds fitted on all maps, in-sample predictions, cross-validated predictions).
    """
    import random

    from .metrics import cohen_kappa

    base = base or PatternThresholds()
    labels = torch.as_tensor(labels).long()
    feats = {k: torch.as_tensor(features[k]).double() for k in ("vertical", "diagonal", "block")}
    grid = calibration_grid()

    def fit(idx):
        sub = {k: v[idx] for k, v in feats.items()}
        best, best_key = None, None
        for g in grid:
            t = PatternThresholds(block=base.block, offsets=base.offsets, **g)
            pred = classify(sub, t)
            key = (cohen_kappa(labels[idx], pred, len(CLASSES)), float((pred == labels[idx]).double().mean()))
            if best_key is None or key > best_key:
                best, best_key = t, key
        return best

    everything = torch.arange(len(labels))
    fitted = fit(everything)
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)
    cv = torch.zeros_like(labels)
    for k in range(folds):
        test = torch.tensor(order[k::folds])
        train = torch.tensor(sorted(set(order) - set(order[k::folds])))
        t = fit(train)
        cv[test] = classify({n: v[test] for n, v in feats.items()}, t)
    return fitted, classify(feats, fitted), cv
