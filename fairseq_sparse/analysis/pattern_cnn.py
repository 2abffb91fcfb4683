"""A small CNN that learns the five pattern classes from maps a person labelled.

Kovaleva et al. classified maps with a CNN trained on about 400 hand-labelled maps; that data
is not public, so the labelling round trip is part of the tool: export maps as pictures plus
a CSV template, let a person fill in the `label` column, train on it and compare with the
rule-based classes (accuracy and Cohen's kappa).

A map is shown to the network as a person sees its heatmap: resized to size x size by area
averaging and scaled so its largest weight is 1.
"""

import csv
import os
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint_reader import read_checkpoint
from .pattern_classes import CLASSES, class_index

LABEL_COLUMNS = ("map_id", "example", "layer", "head", "png", "label")


def map_image(attention, size=32):
    """One map (L, L) -> float32 image (size, size) in [0, 1]."""
    x = attention.float()[None, None]
    x = (
        F.interpolate(x, size=(size, size), mode="area")
        if x.shape[-1] >= size
        else F.interpolate(x, size=(size, size), mode="nearest")
    )
    x = x[0, 0]
    peak = x.max()
    return (x / peak if peak > 0 else x).numpy().astype(np.float32)


class PatternCNN(nn.Module):
    """Three blocks of two 3x3 convolutions with ReLU, then average- and max-pooled features."""

    def __init__(self, size=32, classes=len(CLASSES), width=16):
        super().__init__()
        self.size = size
        layers, channels = [], 1
        for i, out in enumerate((width // 2, width, 2 * width)):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.Conv2d(out, out, 3, padding=1), nn.ReLU()]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(2 * channels, classes)

    def forward(self, images):
        h = self.features(images.unsqueeze(1))
        return self.out(torch.cat([h.mean(dim=(-2, -1)), h.amax(dim=(-2, -1))], dim=-1))


def train_cnn(images, labels, epochs=60, lr=3e-3, batch_size=16, seed=1, width=16):
    """A PatternCNN fitted to images (N, S, S) and class indices (N,), deterministic for a seed."""
    images = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(images) != len(labels) or not len(images):
        raise ValueError(f"need as many labels as images (got {len(labels)} labels, {len(images)} images)")
    torch.manual_seed(seed)
    model = PatternCNN(size=images.shape[-1], width=width)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    # classes weighted by inverse frequency: hand-labelled sets are dominated by one or two classes
    counts = torch.bincount(labels, minlength=len(CLASSES)).float()
    weights = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(images[idx]), labels[idx], weight=weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict(model, images, batch_size=256):
    images = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if images.shape[-1] != model.size:
        raise ValueError(f"the CNN takes {model.size}x{model.size} images, got {tuple(images.shape[-2:])}")
    model.eval()
    return torch.cat([model(images[i : i + batch_size]).argmax(-1) for i in range(0, len(images), batch_size)])


def cross_validated_predictions(images, labels, folds=5, seed=1, **train_kw):
    """Each labelled map predicted by a CNN that did not see it (k-fold), to measure agreement honestly."""
    n = len(labels)
    if n < folds or folds < 2:
        raise ValueError(f"cross-validation needs 2 <= folds <= labelled maps, got folds={folds}, maps={n}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    preds = np.zeros(n, dtype=np.int64)
    images, labels = np.asarray(images), np.asarray(labels)
    for k in range(folds):
        test = order[k::folds]
        train = [i for i in order if i not in set(test)]
        model = train_cnn(images[train], labels[train], seed=seed + k, **train_kw)
        preds[test] = predict(model, images[test]).numpy()
    return preds


def save_cnn(model, path):
    from .outputs import write_torch

    return write_torch(
        path,
        {
            "kind": "fairseq_sparse.pattern_cnn",
            "classes": list(CLASSES),
            "size": model.size,
            "width": model.out.in_features // 4,
            "state_dict": model.state_dict(),
        },
    )


def load_cnn(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pattern CNN file not found: {path!r}")
    blob = read_checkpoint(path, fairseq=False)
    if not isinstance(blob, dict) or blob.get("kind") != "fairseq_sparse.pattern_cnn":
        raise ValueError(f"{path!r} is not a pattern CNN written by `fairseq-sparse-analyze train-cnn`")
    if list(blob["classes"]) != list(CLASSES):
        raise ValueError(f"{path!r} predicts classes {blob['classes']}, expected {list(CLASSES)}")
    model = PatternCNN(size=blob["size"], width=blob["width"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()


def read_labels(path):
    """{map_id: class index} from a filled-in labels CSV; blank labels are skipped (not yet labelled)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"labels file not found: {path!r}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"map_id", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path!r} lacks column(s) {sorted(missing)}; expected the columns {LABEL_COLUMNS}")
        labels = {}
        for line, row in enumerate(reader, start=2):
            text = (row.get("label") or "").strip()
            if not text:
                continue
            try:
                labels[int(row["map_id"])] = class_index(text)
            except ValueError as err:
                raise ValueError(f"{path!r} line {line}: {err}") from None
    return labels
