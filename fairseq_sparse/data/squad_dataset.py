"""The fairseq dataset over binarised SQuAD features (written by fairseq_sparse.data.squad).

A batch carries, besides the tokens and the target (start, end) positions, what span
decoding needs without going back to the files: which positions may start or end an answer
(context tokens; starts only where the window gives the token its most context; "no answer"
is scored separately at position 0), the context word of each position, and the example each feature belongs to.
"""

import os

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils
from fairseq.data.indexed_dataset import MMapIndexedDataset


class SquadFeatureDataset(FairseqDataset):
    def __init__(self, prefix, pad_idx, example_offset=0, shuffle=True, seed=1):
        for name in ("tokens", "words", "maxctx"):
            if not MMapIndexedDataset.exists(f"{prefix}.{name}"):
                raise FileNotFoundError(
                    f"SQuAD features not found: {prefix}.{name}.idx/.bin (run examples/squad/preprocess.py)"
                )
        self.tokens = MMapIndexedDataset(f"{prefix}.tokens")
        self.words = MMapIndexedDataset(f"{prefix}.words")
        self.maxctx = MMapIndexedDataset(f"{prefix}.maxctx")
        rows = np.load(f"{prefix}.features.npy")
        if not len(rows) == len(self.tokens) == len(self.words) == len(self.maxctx):
            raise ValueError(f"{prefix}: feature files disagree on the number of features")
        self.example, self.start, self.end = rows[:, 0] + example_offset, rows[:, 1], rows[:, 2]
        self.pad_idx, self.shuffle, self.seed, self.epoch = pad_idx, shuffle, seed, 1
        self._sizes = self.tokens.sizes.astype(np.int64)

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, index):
        words = self.words[index].long()
        context = words >= 0
        start_ok = context & (self.maxctx[index] > 0)
        end_ok = context
        return {
            "id": index,
            "tokens": self.tokens[index].long(),
            "words": words,
            "start_ok": start_ok,
            "end_ok": end_ok,
            "example": int(self.example[index]),
            "start": int(self.start[index]),
            "end": int(self.end[index]),
        }

    def collater(self, samples):
        if not samples:
            return {}

        def pad(key, value):
            return data_utils.collate_tokens([s[key] for s in samples], value)

        tokens = pad("tokens", self.pad_idx)
        return {
            "id": torch.tensor([s["id"] for s in samples]),
            "nsentences": len(samples),
            "ntokens": sum(len(s["tokens"]) for s in samples),
            "net_input": {
                "src_tokens": tokens,
                "src_lengths": torch.tensor([len(s["tokens"]) for s in samples]),
            },
            "target": torch.tensor([[s["start"], s["end"]] for s in samples]),
            "start_ok": pad("start_ok", False),
            "end_ok": pad("end_ok", False),
            "words": pad("words", -1),
            "example": torch.tensor([s["example"] for s in samples]),
        }

    @property
    def sizes(self):
        return self._sizes

    def num_tokens(self, index):
        return int(self._sizes[index])

    def size(self, index):
        return int(self._sizes[index])

    def ordered_indices(self):
        if self.shuffle:
            with data_utils.numpy_seed(self.seed, self.epoch):
                order = np.random.permutation(len(self))
            return order[np.argsort(self._sizes[order], kind="mergesort")]
        return np.argsort(self._sizes, kind="mergesort")

    def set_epoch(self, epoch):
        self.epoch = epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False

    @staticmethod
    def exists(prefix):
        return os.path.exists(f"{prefix}.features.npy")
