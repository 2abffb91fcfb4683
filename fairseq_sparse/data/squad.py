"""SQuAD v1.1 / v2.0: official JSON -> binarised span-prediction features, and back to answers.

A context is split into "words" at whitespace and punctuation (BERT's pre-tokenisation rule,
with character spans kept), each word is sub-tokenised by the checkpoint's tokenizer, and
windows of at most max_seq_length tokens are cut with a stride (BERT's recipe):
  BERT layout:    <s> question </s> context-window </s>
  RoBERTa layout: <s> question </s> </s> context-window </s>
A span is predicted as (first token, last token) and mapped back to the words' character
span in the original context, so answer text is exact original text. Unanswerable questions
(v2.0) and windows that miss the answer point at position 0 (<s> = [CLS]).

Files written to DEST (atomically): dict.txt, meta.json, and per split
  {split}.tokens.{bin,idx}  token ids per feature (fairseq mmap indexed dataset)
  {split}.words.{bin,idx}   per token: context word index, or -1 outside the context
  {split}.maxctx.{bin,idx}  per token: 1 where this window gives the token its most context
  {split}.features.npy      per feature: example index, start, end (target positions)
  {split}.examples.jsonl    per example: id, context, word spans, gold answers
"""

import json
import logging
import os
import shutil
from dataclasses import dataclass, field

import numpy as np
import torch
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

from ..atomic_files import atomic_directory
from .wordpiece import pre_tokenize_with_offsets

logger = logging.getLogger(__name__)


@dataclass
class SquadExample:
    qid: str
    question: str
    context: str
    answers: list[tuple[str, int]] = field(default_factory=list)  # (text, start char)
    is_impossible: bool = False


def read_squad(path):
    """(version, [SquadExample]) from an official SQuAD JSON file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SQuAD file not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{path!r} is not a SQuAD file (expected {{'version': ..., 'data': [articles]}})")
    examples = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            context = para["context"]
            for qa in para["qas"]:
                impossible = bool(qa.get("is_impossible", False))
                answers = [] if impossible else [(a["text"], int(a["answer_start"])) for a in qa["answers"]]
                examples.append(SquadExample(qa["id"], qa["question"], context, answers, impossible))
    version = str(data.get("version", "1.1"))
    if any(e.is_impossible for e in examples):
        version = "2.0"
    return version, examples


# BERT's word boundaries (whitespace, punctuation, each CJK ideograph) with every character kept:
# no cleaning, case or accent folding, so a word's span is exactly the text a reader sees.
_WORD_NORMALIZER = BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False)
_WORD_SPLITTER = BertPreTokenizer()


def split_words(text):
    """[(start, end, preceded_by_space)]: whitespace/punctuation/CJK-separated words of `text`.

    Only whitespace lies between words, so a gap before a word means a space preceded it; the
    first word counts as preceded by one (GPT-2 BPE gives it no space marker either way).
    """
    words, previous_end = [], None
    for _, start, end in pre_tokenize_with_offsets(text, _WORD_NORMALIZER, _WORD_SPLITTER):
        words.append((start, end, previous_end is None or previous_end < start))
        previous_end = end
    return words


class FeatureBuilder:
    """Turns examples into windows of token ids for one tokenizer and dictionary."""

    def __init__(
        self, bpe, dictionary, bert_layout, space_prefix=False, max_seq_length=384, doc_stride=128, max_query_length=64
    ):
        if max_seq_length < max_query_length + 8:
            raise ValueError(
                f"max_seq_length {max_seq_length} leaves no room after max_query_length {max_query_length}"
            )
        if doc_stride < 1:
            raise ValueError(f"doc_stride must be >= 1, got {doc_stride}")
        self.bpe, self.dictionary = bpe, dictionary
        self.bert_layout, self.space_prefix = bert_layout, space_prefix
        self.max_seq_length, self.doc_stride, self.max_query_length = max_seq_length, doc_stride, max_query_length
        self._last_context = (None, None)  # questions of a paragraph share its context: tokenise it once

    def ids(self, text):
        tokens = self.bpe.encode(text)
        return self.dictionary.encode_line(tokens, add_if_not_exist=False, append_eos=False).tolist() if tokens else []

    def tokenize_context(self, context):
        """(word spans, token ids of the context, word index of each token)."""
        if self._last_context[0] == context:
            return self._last_context[1]
        words = split_words(context)
        doc_ids, doc_word = [], []
        for k, (s, e, space) in enumerate(words):
            ids = self.ids((" " if self.space_prefix and space and k > 0 else "") + context[s:e])
            doc_ids += ids
            doc_word += [k] * len(ids)
        self._last_context = (context, (words, doc_ids, doc_word))
        return words, doc_ids, doc_word

    def features(self, example, training):
        """[(token ids, word index per token, max-context flags, start, end)] and word spans."""
        words, doc_ids, doc_word = self.tokenize_context(example.context)
        q_ids = self.ids(example.question)[: self.max_query_length]
        d = self.dictionary
        prefix = [d.bos()] + q_ids + [d.eos()] + ([] if self.bert_layout else [d.eos()])
        room = self.max_seq_length - len(prefix) - 1
        answer = self._answer_tokens(example, words, doc_word) if training else None
        if training and answer is None and not example.is_impossible:
            return [], words
        windows, start = [], 0
        while True:
            length = min(room, len(doc_ids) - start)
            windows.append((start, length))
            if start + length >= len(doc_ids):
                break
            start += min(length, self.doc_stride)
        out = []
        for w, (start, length) in enumerate(windows):
            ids = prefix + doc_ids[start : start + length] + [d.eos()]
            word_of = [-1] * len(prefix) + doc_word[start : start + length] + [-1]
            maxctx = (
                [0] * len(prefix)
                + [int(self._is_max_context(windows, w, p)) for p in range(start, start + length)]
                + [0]
            )
            s_pos = e_pos = 0
            if answer is not None and start <= answer[0] and answer[1] < start + length:
                s_pos, e_pos = answer[0] - start + len(prefix), answer[1] - start + len(prefix)
            out.append((ids, word_of, maxctx, s_pos, e_pos))
        return out, words

    @staticmethod
    def _is_max_context(windows, w, pos):
        """Whether window w gives doc token `pos` the largest min(left, right) context (BERT's rule)."""
        best, best_w = None, None
        for i, (start, length) in enumerate(windows):
            if not start <= pos < start + length:
                continue
            score = min(pos - start, start + length - 1 - pos) + 0.01 * length
            if best is None or score > best:
                best, best_w = score, i
        return best_w == w

    @staticmethod
    def _answer_tokens(example, words, doc_word):
        """(first, last) doc-token index of the first gold answer, or None if it cannot be located."""
        if example.is_impossible or not example.answers:
            return None
        text, start = example.answers[0]
        end = start + len(text)
        if example.context[start:end] != text:
            logger.warning("question %s: answer %r is not at char %d of its context; skipped", example.qid, text, start)
            return None
        inside = [k for k, (s, e, _) in enumerate(words) if s < end and e > start]
        tokens = [i for i, k in enumerate(doc_word) if inside and inside[0] <= k <= inside[-1]]
        if not tokens:
            logger.warning("question %s: answer %r covers no tokens; skipped", example.qid, text)
            return None
        return tokens[0], tokens[-1]


def write_squad_data(dest, splits, builder, srcdict, extra_meta=None):
    """splits: {fairseq split: (path to official JSON, training?)} -> DEST (see module docstring)."""
    from fairseq.data.indexed_dataset import MMapIndexedDatasetBuilder

    with atomic_directory(dest) as tmp:
        shutil.copy(srcdict, os.path.join(tmp, "dict.txt"))
        counts, versions = {}, set()
        for split, (path, training) in splits.items():
            version, examples = read_squad(path)
            versions.add(version)
            builders = {
                "tokens": MMapIndexedDatasetBuilder(os.path.join(tmp, f"{split}.tokens.bin"), dtype=np.int32),
                "words": MMapIndexedDatasetBuilder(os.path.join(tmp, f"{split}.words.bin"), dtype=np.int32),
                "maxctx": MMapIndexedDatasetBuilder(os.path.join(tmp, f"{split}.maxctx.bin"), dtype=np.int32),
            }
            rows, n_examples = [], 0
            with open(os.path.join(tmp, f"{split}.examples.jsonl"), "w", encoding="utf-8") as ex_file:
                for ex in examples:
                    feats, words = builder.features(ex, training)
                    if not feats:
                        continue
                    for ids, word_of, maxctx, s, e in feats:
                        builders["tokens"].add_item(torch.tensor(ids, dtype=torch.int32))
                        builders["words"].add_item(torch.tensor(word_of, dtype=torch.int32))
                        builders["maxctx"].add_item(torch.tensor(maxctx, dtype=torch.int32))
                        rows.append((n_examples, s, e))
                    ex_file.write(
                        json.dumps(
                            {
                                "id": ex.qid,
                                "context": ex.context,
                                "words": [[s, e] for s, e, _ in words],
                                "answers": [a for a, _ in ex.answers],
                                "is_impossible": ex.is_impossible,
                            }
                        )
                        + "\n"
                    )
                    n_examples += 1
            if not rows:
                raise ValueError(f"{path}: no usable examples")
            for name, b in builders.items():
                b.finalize(os.path.join(tmp, f"{split}.{name}.idx"))
            np.save(os.path.join(tmp, f"{split}.features.npy"), np.asarray(rows, dtype=np.int64))
            counts[split] = {"examples": n_examples, "features": len(rows)}
        if len(versions) > 1 and "2.0" in versions and any(s.startswith("train") for s in splits):
            logger.warning("mixing SQuAD versions %s", sorted(versions))
        meta = {
            "version": "2.0" if "2.0" in versions else "1.1",
            "max_seq_length": builder.max_seq_length,
            "doc_stride": builder.doc_stride,
            "max_query_length": builder.max_query_length,
            "bert_layout": builder.bert_layout,
            "splits": counts,
            **(extra_meta or {}),
        }
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
    logger.info("wrote %s: %s", dest, counts)
    return meta


def read_examples(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def best_spans(start_logits, end_logits, start_mask, end_mask, max_answer_length):
    """Per feature: best (start, end, score) with start <= end < start + max_answer_length.

    start_logits/end_logits: (B, T); masks: (B, T) bool of allowed positions. Returns three
    (B,) tensors; score is -inf where no span is allowed.
    """
    s = start_logits.float().masked_fill(~start_mask, float("-inf"))
    e = end_logits.float().masked_fill(~end_mask, float("-inf"))
    scores = s.unsqueeze(2) + e.unsqueeze(1)  # (B, start, end)
    T = scores.size(1)
    i = torch.arange(T, device=scores.device)
    allowed = (i.view(1, T) >= i.view(T, 1)) & (i.view(1, T) - i.view(T, 1) < max_answer_length)
    scores = scores.masked_fill(~allowed, float("-inf")).view(scores.size(0), -1)
    best, flat = scores.max(dim=1)
    return flat // T, flat % T, best


def answers_from_spans(examples, rows, null_threshold=0.0, version="2.0"):
    """Example-level predictions from per-feature rows (example, start word, end word, score, null score).

    The best-scoring span over an example's windows wins; for v2.0 the example is answered ""
    when its smallest null score exceeds that span's score by more than null_threshold.
    Returns ({qid: text}, {qid: null score - best span score}).
    """
    best = {}
    for ex, ws, we, score, null in rows:
        b = best.setdefault(int(ex), [float("-inf"), -1, -1, float("inf")])
        if score > b[0] and ws >= 0 and we >= ws:
            b[0], b[1], b[2] = float(score), int(ws), int(we)
        b[3] = min(b[3], float(null))
    preds, odds = {}, {}
    for ex, (score, ws, we, null) in best.items():
        example = examples[ex]
        text = ""
        if ws >= 0:
            spans = example["words"]
            text = example["context"][spans[ws][0] : spans[we][1]]
        diff = null - score if ws >= 0 else float("inf")
        odds[example["id"]] = diff
        if version == "2.0" and diff > null_threshold:
            text = ""
        preds[example["id"]] = text
    return preds, odds
