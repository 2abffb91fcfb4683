"""Which examples an analysis reads, batched as the task collates them, and what each token is.

The paper analyses up to 1000 random dev examples per task; a seeded random subset keeps runs
comparable (drift needs the very same examples for both checkpoints). Batches group examples of
similar length so little time goes into padding.
"""

import unicodedata
from dataclasses import dataclass

import numpy as np
import torch

TOKEN_TYPES = ("other", "cls", "sep", "punct")
OTHER, CLS, SEP, PUNCT = range(4)


def select_indices(n_available, max_examples=None, seed=1, indices=None):
    """Explicit indices (checked), else all examples, else a seeded random subset of max_examples."""
    if indices is not None:
        bad = [i for i in indices if not 0 <= i < n_available]
        if bad:
            raise ValueError(f"example indices {bad} out of range: the split has {n_available} examples (0-based)")
        return list(indices)
    if max_examples is not None and max_examples <= 0:
        raise ValueError(f"--max-examples must be positive, got {max_examples}")
    if max_examples is None or max_examples >= n_available:
        return list(range(n_available))
    rng = np.random.RandomState(seed)
    return sorted(rng.choice(n_available, size=max_examples, replace=False).tolist())


@dataclass
class Batch:
    indices: list[int]
    src_tokens: torch.Tensor  # (batch, length), right-padded
    target: torch.Tensor = None


def make_batches(dataset, indices, batch_size=32, max_tokens=None):
    """Collated batches over `indices`, examples of similar length together."""
    if batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {batch_size}")
    order = sorted(indices, key=lambda i: (int(dataset.size(i)), i))
    batches, current = [], []

    def flush():
        if current:
            sample = dataset.collater([dataset[i] for i in current])
            batches.append(Batch(list(current), sample["net_input"]["src_tokens"], sample.get("target")))
            current.clear()

    for i in order:
        longest = max([int(dataset.size(j)) for j in current] + [int(dataset.size(i))])
        if current and (len(current) >= batch_size or (max_tokens and longest * (len(current) + 1) > max_tokens)):
            flush()
        current.append(i)
    flush()
    return batches


def is_punctuation(symbol):
    """A token made only of Unicode punctuation (WordPiece '##' continuation marks ignored)."""
    text = symbol[2:] if symbol.startswith("##") and len(symbol) > 2 else symbol
    return bool(text) and all(unicodedata.category(ch).startswith("P") for ch in text)


class TokenTyper:
    """Token ids -> other / [CLS] / [SEP] / punctuation codes, for one dictionary and token layout.

    [CLS] is the init token (BERT's [CLS] is fairseq's <s> after conversion); [SEP] is </s> and
    the pair separator token if one is used.
    """

    def __init__(self, dictionary, init_token=None, separator_token=None):
        self.dictionary = dictionary
        codes = torch.full((len(dictionary),), OTHER, dtype=torch.long)
        for i, symbol in enumerate(dictionary.symbols):
            if is_punctuation(symbol):
                codes[i] = PUNCT
        codes[dictionary.eos()] = SEP
        if separator_token is not None:
            codes[separator_token] = SEP
        codes[dictionary.bos() if init_token is None else init_token] = CLS
        self.codes = codes

    def types(self, tokens):
        return self.codes[tokens.cpu()]

    def strings(self, tokens):
        return [self.dictionary[int(t)] for t in tokens]


def segment_ids(types):
    """Sentence number of every position: it increases after each [SEP] (pairs give 0, 1, ...)."""
    is_sep = (types == SEP).long()
    return torch.cumsum(is_sep, 0) - is_sep
