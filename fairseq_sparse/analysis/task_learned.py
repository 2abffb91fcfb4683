"""Has a masked-LM model learned its task? Its MLM loss against the unigram entropy.

A model that ignores the context can do no better than predict each masked token by its
frequency: its loss is the unigram entropy of the targets. Only a loss clearly below that shows
the model reads the context, and only then can a learned attention mask (DAM) tell useful keys
from useless ones: a search on a model at the unigram plateau drives every mask logit down
(the penalty is the only signal) and exports an empty mask. This module is the one place that
entropy is computed (from dict.txt counts or from a binarised split) and that verdict is given.
"""

import os

import numpy as np

from ..checkpoint_reader import read_checkpoint

# "clearly below": a frequency-only model scores the unigram entropy; a bit under it means the
# model predicts a masked token with, on average, twice the probability its frequency gives it
LEARNED_MARGIN_BITS = 1.0
RECIPE = "examples/pretraining/pretrain_small.py"


def unigram_entropy_bits(counts):
    """Entropy in bits of the distribution given by non-negative counts (zeros ignored)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(
            f"unigram counts must be a 1-d array of non-negative numbers with a positive sum, "
            f"got shape {counts.shape} and sum {counts.sum() if counts.size else 0}"
        )
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def unigram_cross_entropy_bits(train_counts, test_counts, smoothing=0.5):
    """Bits per token of `test_counts` under the unigram distribution of `train_counts` (each count
    + smoothing): the loss of the best context-free model fitted to the training data. It is above
    the test set's own entropy, which a small test set underestimates (its rare tokens look likelier)."""
    p = np.asarray(train_counts, dtype=np.float64) + smoothing
    q = np.asarray(test_counts, dtype=np.float64)
    if p.shape != q.shape or (q < 0).any() or q.sum() <= 0:
        raise ValueError(
            f"train and test counts must be the same length with a positive test sum, got shapes "
            f"{p.shape} and {q.shape}"
        )
    p, q = p / p.sum(), q / q.sum()
    return float(-(q[q > 0] * np.log2(p[q > 0])).sum())


def dict_counts(path):
    """The counts column of a fairseq dict.txt ('token count [#fairseq:overwrite]' per line)."""
    counts = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.rstrip("\n").split(" ")
            if fields[-1] == "#fairseq:overwrite":
                fields = fields[:-1]
            if len(fields) < 2 or not fields[-1].isdigit():
                raise ValueError(f"{path} line {n}: expected 'token count', got {line.rstrip()!r}")
            counts.append(int(fields[-1]))
    return counts


def split_counts(data, split="valid", tokens_per_sample=128, break_mode="complete_doc"):
    """Per dictionary index, how often it occurs in the tokens masked_lm draws its targets from in
    `split` of DATA (the first path of a:b:c): blocks of tokens_per_sample - 1 tokens, each with its
    <s>, as fairseq's masked_lm task builds them. Every non-pad position is equally likely to be masked."""
    from fairseq.data import Dictionary, PrependTokenDataset, TokenBlockDataset, data_utils

    path = data.split(":")[0]
    dictionary = Dictionary.load(os.path.join(path, "dict.txt"))
    dataset = data_utils.load_indexed_dataset(os.path.join(path, split), dictionary)
    if dataset is None:
        raise FileNotFoundError(f"no binarised {split} split in {path}")
    blocks = PrependTokenDataset(
        TokenBlockDataset(
            dataset,
            dataset.sizes,
            tokens_per_sample - 1,
            pad=dictionary.pad(),
            eos=dictionary.eos(),
            break_mode=break_mode,
        ),
        dictionary.bos(),
    )
    counts = np.zeros(len(dictionary), dtype=np.int64)
    for i in range(len(blocks)):
        counts += np.bincount(blocks[i].numpy(), minlength=len(dictionary))
    return counts


def recorded_mlm_bits(checkpoint):
    """(training MLM loss in bits, where it was read) as a fairseq checkpoint records it: the mean
    since the last log line (train_inner), else over the epoch in progress (train). That is the
    loss a DAM search trained on; its validation uses the binarised mask, which may keep nothing,
    and is not stored. (None, None) when the checkpoint records neither."""
    aggregators = (checkpoint.get("extra_state") or {}).get("metrics") or {}
    for aggregator in ("train_inner", "train"):
        # fairseq's MetersDict.state_dict(): [(priority, name, meter type, meter state)]
        meters = {entry[1]: entry[3] for entry in aggregators.get(aggregator) or [] if len(entry) == 4}
        for name in ("mlm_loss", "loss"):  # masked_lm_dam logs the MLM part apart; masked_lm only "loss"
            state = meters.get(name)
            if isinstance(state, dict) and float(state.get("count", 0)) > 0:
                return float(state["sum"]) / float(state["count"]), f"{aggregator} {name}"
    return None, None


def checkpoint_dict_path(checkpoint):
    """The dict.txt of the data a checkpoint was trained on (first path of its task's data)."""
    cfg = checkpoint.get("cfg") or {}
    task = cfg.get("task") if isinstance(cfg, dict) else getattr(cfg, "task", None)
    data = task.get("data") if isinstance(task, dict) else getattr(task, "data", None)
    if not data and checkpoint.get("args") is not None:
        data = getattr(checkpoint["args"], "data", None)
    return os.path.join(str(data).split(":")[0], "dict.txt") if data else None


def learning_verdict(mlm_bits, unigram_bits, margin=LEARNED_MARGIN_BITS):
    """True when the MLM loss is at least `margin` bits under the unigram entropy."""
    return mlm_bits <= unigram_bits - margin


def not_learned_note(checkpoint_path):
    """A sentence for an empty learned mask: whether the checkpoint's model had learned its
    task (MLM loss against the unigram entropy of its dict.txt counts) and what to do."""
    try:
        checkpoint = read_checkpoint(checkpoint_path)
        mlm_bits, source = recorded_mlm_bits(checkpoint)
        dict_path = checkpoint_dict_path(checkpoint)
        if mlm_bits is None or dict_path is None or not os.path.isfile(dict_path):
            raise ValueError("it records no training MLM loss" if mlm_bits is None else f"{dict_path} is missing")
        unigram = unigram_entropy_bits(dict_counts(dict_path))
    except (OSError, ValueError) as err:
        return (
            f"Could not check whether the model had learned its task ({err}): check that its masked-LM loss "
            f"is well under the unigram entropy of its data before searching (see {RECIPE})."
        )
    numbers = (
        f"its MLM loss ({source}) is {mlm_bits:.2f} bits against a unigram entropy of {unigram:.2f} bits "
        f"(the counts of {dict_path})"
    )
    if learning_verdict(mlm_bits, unigram):
        return (
            f"The model had learned its task ({numbers}), so the penalty outweighed the masked-LM gradient: "
            "a smaller --dam-lambda or a longer search may keep more."
        )
    return (
        f"The model has not learned its task yet: {numbers}; a model that predicts every masked token by "
        f"its frequency alone scores the unigram entropy, and a mask searched against it keeps nothing. "
        f"First train it with dense attention (--criterion masked_lm, --attn-mask none) until its loss is "
        f"at least {LEARNED_MARGIN_BITS:g} bit under the unigram entropy (adapt a pre-trained model, train "
        f"longer, or pre-train with {RECIPE}), then search from that checkpoint."
    )
