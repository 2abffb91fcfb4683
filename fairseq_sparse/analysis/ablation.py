"""Disabling heads and layers without retraining (Kovaleva et al. 2019, section 6).

A disabled head's attention is replaced by uniform weights 1/L over the example's non-padded
keys (SparseMultiheadAttention.set_uniform_heads); a disabled layer is all its heads disabled.
The dev set is scored with the classification head for every single head, every layer, random
head subsets and a greedy pruning order: the task metric (accuracy, ...) and each example's
gold-label log-probability, whose mean moves even when no prediction flips.

Sweeps run hundreds of evaluations, so the evaluator keeps every layer's input for the current
set of disabled heads: removing a head of layer l only reruns layers l..L-1 and the classifier.
"""

import logging
import random
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from . import metrics

logger = logging.getLogger(__name__)


def apply_disabled(modules, disabled):
    """Make exactly the (layer, head) pairs in `disabled` uniform (0-based), all others intact."""
    per_layer = [[] for _ in modules]
    for layer, head in disabled:
        if not 0 <= layer < len(modules):
            raise ValueError(f"layer index {layer} out of range [0, {len(modules)})")
        per_layer[layer].append(head)
    for module, heads in zip(modules, per_layer):
        module.set_uniform_heads(sorted(heads))


def layer_heads(layer, num_heads):
    return frozenset((layer, h) for h in range(num_heads))


@dataclass
class Evaluation:
    score: float
    loss: float
    per_example: torch.Tensor = None  # (N,) metrics.per_example: gold-label log-probability or -squared error

    @property
    def mean_per_example(self):
        return float(self.per_example.mean())

    def key(self):
        """Sort key: higher score first, then lower loss (accuracy ties are common on small dev sets)."""
        return (-self.score, self.loss)


class AblationEvaluator:
    """Scores the classifier on fixed dev batches with a chosen set of heads disabled."""

    def __init__(self, setup, batches, metric=None, cache_mb=2048, progress=True):
        setup.require_head("ablation")
        if any(b.target is None for b in batches):
            raise ValueError(f"the split has no labels ({setup.task.cfg.data}/label): ablation needs gold labels")
        self.setup = setup
        self.model = setup.model
        self.modules = setup.attention_modules
        self.num_layers, self.num_heads = setup.num_layers, setup.num_heads
        self.metric = metric or metrics.default_metric(setup.regression)
        metrics.check_metric(self.metric, setup.regression)
        self.batches = batches
        self.pad = setup.dictionary.pad()
        self.head = self.model.classification_heads[setup.head_name]
        self.gold = torch.cat([b.target.reshape(len(b.indices), -1) for b in batches]).squeeze(-1)
        self.progress = progress
        self.evaluations = 0
        encoder = getattr(getattr(self.model, "encoder", None), "sentence_encoder", None)
        self._encoder = encoder if hasattr(encoder, "layers") else None
        self._use_cache = self._encoder is not None and self._cache_bytes() <= cache_mb * 2**20
        if self._encoder is not None and not self._use_cache:
            logger.warning(
                "layer-input cache would exceed --cache-mb %d: every evaluation runs the whole model", cache_mb
            )
        self._cache = None
        self.base = frozenset()
        self.set_base(frozenset())

    def _cache_bytes(self):
        dim = self._encoder.embed_tokens.embedding_dim
        return sum(b.src_tokens.numel() * dim * 4 * (self.num_layers + 1) for b in self.batches)

    @torch.no_grad()
    def set_base(self, disabled):
        """Make `disabled` the reference state whose layer inputs are cached (greedy pruning moves it).

        Only the layers from the first one whose heads changed are recomputed.
        """
        disabled = frozenset(disabled)
        start = min((layer for layer, _ in disabled ^ self.base), default=self.num_layers)
        self.base = disabled
        apply_disabled(self.modules, self.base)
        if self._use_cache and self._cache is None:
            self._cache = []
            for b in self.batches:
                out = self._encoder(b.src_tokens.to(self.setup.device), return_all_hiddens=True)
                self._cache.append(list(out["encoder_states"]))
        elif self._use_cache:
            for i, states in enumerate(self._cache):
                x, pad = states[start], self._padding(i)
                for layer_index in range(start, self.num_layers):
                    x = self._layer(layer_index, x, pad)
                    states[layer_index + 1] = x
        self.base_evaluation = self.evaluate(self.base)

    def _padding(self, batch_index):
        pad = self.batches[batch_index].src_tokens.to(self.setup.device).eq(self.pad)
        return pad if pad.any() else None  # as TransformerEncoder.forward does

    def _layer(self, index, x, pad):
        x = self._encoder.layers[index](x, encoder_padding_mask=pad)
        return x[0] if isinstance(x, tuple) else x

    @torch.no_grad()
    def _logits(self, batch_index, start):
        batch = self.batches[batch_index]
        tokens = batch.src_tokens.to(self.setup.device)
        if not self._use_cache:
            return self.model(tokens, features_only=True, classification_head_name=self.setup.head_name)[0]
        x, pad = self._cache[batch_index][start], self._padding(batch_index)
        for index in range(start, self.num_layers):
            x = self._layer(index, x, pad)
        if self._encoder.layer_norm is not None:
            x = self._encoder.layer_norm(x)
        return self.head(x.transpose(0, 1))

    @torch.no_grad()
    def outputs(self, disabled):
        """Classifier outputs (N, classes) on the dev batches with `disabled` heads uniform."""
        disabled = frozenset(disabled)
        changed = disabled ^ self.base
        start = min((layer for layer, _ in changed), default=self.num_layers)
        apply_disabled(self.modules, disabled)
        try:
            out = torch.cat([self._logits(i, start).float().cpu() for i in range(len(self.batches))])
        finally:
            apply_disabled(self.modules, self.base)
        self.evaluations += 1
        return out

    def evaluate(self, disabled):
        out = self.outputs(disabled)
        regression = self.setup.regression
        return Evaluation(
            metrics.score(self.metric, out, self.gold),
            metrics.loss(out, self.gold, regression),
            metrics.per_example(out, self.gold, regression),
        )

    def all_heads(self):
        return [(layer, head) for layer in range(self.num_layers) for head in range(self.num_heads)]

    # ----- sweeps ---------------------------------------------------------------------------
    def single_heads(self):
        """{(layer, head): Evaluation} with only that head disabled."""
        self.set_base(frozenset())
        return {
            lh: self.evaluate({lh})
            for lh in tqdm(self.all_heads(), desc="disable each head", disable=not self.progress)
        }

    def layers(self):
        self.set_base(frozenset())
        return [
            self.evaluate(layer_heads(layer, self.num_heads))
            for layer in tqdm(range(self.num_layers), desc="disable each layer", disable=not self.progress)
        ]

    def random_subsets(self, sizes, trials, seed=1):
        """For each size k, `trials` seeded random k-head subsets disabled together."""
        self.set_base(frozenset())
        heads = self.all_heads()
        bad = [k for k in sizes if not 1 <= k <= len(heads)]
        if bad:
            raise ValueError(f"--random-heads sizes {bad} out of range [1, {len(heads)}]")
        if trials < 1:
            raise ValueError(f"--random-trials must be >= 1, got {trials}")
        rng = random.Random(seed)
        results = []
        for k in tqdm(sizes, desc="random head subsets", disable=not self.progress):
            subsets = [sorted(rng.sample(heads, k)) for _ in range(trials)]
            results.append((k, subsets, [self.evaluate(s) for s in subsets]))
        return results

    def greedy(self, steps, candidates=0, initial=None):
        """Remove, `steps` times, the head whose removal hurts the score least.

        candidates > 0 is lazy greedy: after the first step only the `candidates` heads that hurt
        least when last evaluated are re-evaluated (the full search is O(heads^2) evaluations).
        `initial` ({(layer, head): Evaluation} of single removals) saves the first step's sweep.
        Returns [(removed head, Evaluation after removal, evaluations in that step)].
        """
        remaining = set(self.all_heads())
        steps = len(remaining) if steps < 0 else min(steps, len(remaining))
        last = dict(initial or {})
        self.set_base(frozenset())
        curve = []
        for _ in tqdm(range(steps), desc="greedy pruning", disable=not self.progress):
            known = all(lh in last for lh in remaining)
            ranked = sorted(remaining, key=lambda lh: (last[lh].key(), lh) if lh in last else ((float("-inf"),), lh))
            if known and not curve and initial is not None:
                ranked = []  # the first step is the single-head sweep already done
            elif known and candidates > 0:
                ranked = ranked[:candidates]
            for lh in ranked:
                last[lh] = self.evaluate(self.base | {lh})
            # lazy greedy picks among the heads it has just re-evaluated: the others' scores are stale
            best = min(ranked or remaining, key=lambda lh: (last[lh].key(), lh))
            remaining.discard(best)
            self.set_base(self.base | {best})
            curve.append((best, self.base_evaluation, len(ranked)))
        self.set_base(frozenset())
        return curve
