"""Score a fine-tuned classifier on the binarised splits: per-example class probabilities and the
attention density, then the metrics of metrics.py and a predictions TSV a user can check by hand.

The density is fairseq_sparse/modules/attention_stats.py's: non-zero weights over real
(query, key) pairs, counted per head and summed over batches, then per layer.
"""

import os
from typing import NamedTuple

from ..atomic_files import atomic_output
from ..modules.attention_stats import attention_density_counts, support_sizes


class SplitOutput(NamedTuple):
    ids: list[str]  # the example's place in its file, '<file>:<line>', in file order
    gold: list[int]  # class index
    probs: list[list[float]]  # (examples, classes), softmax of the head's logits
    density_per_layer: list[float]  # empty when the model has no sparse attention modules


def _uids(data, split, n):
    path = os.path.join(data, "raw", f"{split}.id")
    if not os.path.isfile(path):
        return [str(i) for i in range(n)]
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def predict(checkpoint, data, splits, batch_size=32):
    """{split: SplitOutput} of the checkpoint on the binarised data directory."""
    import torch
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides={"data": data})
    model = models[0].eval()
    attn = model.attention_modules() if hasattr(model, "attention_modules") else []
    head = task.cfg.classification_head_name
    pad = task.source_dictionary.pad()
    out = {}
    for split in splits:
        task.load_dataset(split)
        dataset = task.dataset(split)
        itr = task.get_batch_iterator(
            dataset, max_sentences=batch_size, max_positions=task.max_positions(), ignore_invalid_inputs=False
        ).next_epoch_itr(shuffle=False)
        n = len(dataset)
        probs, gold = [None] * n, [None] * n
        nonzero = torch.zeros(len(attn), dtype=torch.float64)
        pairs = torch.zeros(len(attn), dtype=torch.float64)
        for m in attn:
            m.capture_attention = True
        try:
            with torch.no_grad():
                for sample in itr:
                    logits = model(**sample["net_input"], features_only=True, classification_head_name=head)[0]
                    p = torch.softmax(logits.double(), dim=-1)
                    for i, row, target in zip(sample["id"].tolist(), p.tolist(), sample["target"].view(-1).tolist()):
                        probs[i], gold[i] = row, int(target)
                    padding = sample["net_input"]["src_tokens"].eq(pad)
                    for layer, m in enumerate(attn):
                        counts = attention_density_counts(support_sizes(m.last_attention), padding)
                        nonzero[layer] += counts.nonzero.sum()
                        pairs[layer] += counts.pairs.sum()
        finally:
            for m in attn:
                m.capture_attention, m.last_attention = False, None
        if any(p is None for p in probs):
            raise RuntimeError(f"{split}: {probs.count(None)} of {n} examples were not scored (too long?)")
        density = (nonzero / pairs.clamp(min=1)).tolist() if attn else []
        out[split] = SplitOutput(_uids(data, split, n), gold, probs, density)
    return out


def predicted(output):
    """Class index of the highest probability, per example (the first on a tie)."""
    return [max(range(len(row)), key=row.__getitem__) for row in output.probs]


def write_predictions(path, output, names):
    """TSV, one row per example in file order: id, label, prediction, p_<class> for each class."""
    with atomic_output(path) as f:
        f.write("\t".join(["id", "label", "prediction", *(f"p_{name}" for name in names)]) + "\n")
        for uid, gold, guess, row in zip(output.ids, output.gold, predicted(output), output.probs):
            f.write("\t".join([uid, names[gold], names[guess], *(f"{p:.6f}" for p in row)]) + "\n")
