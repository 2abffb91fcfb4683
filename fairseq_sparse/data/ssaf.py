"""Readers for the sentiment / entailment sets of the SSAF experiments, in their released formats.

Each reader returns ({fairseq split: [Example]}, label names) for write_sentence_prediction_data.

Formats supported:
- SST (Stanford Sentiment Treebank), PTB trees: one tree per line, `(3 (2 It) (4 (2 's) ...))`,
  files train.txt / dev.txt / test.txt. The root label is the sentence label. SST-1: five classes
  0-4; SST-2: 0-1 negative, 3-4 positive, neutral (2) dropped. `phrases=True` also trains on
  every labelled sub-phrase (as the SST paper does), deduplicated.
- SST as text: TSV with a header holding `sentence` and `label` columns (GLUE's SST-2 layout),
  or header-less lines `LABEL<tab or space>sentence` with an integer LABEL (the stsa.* files).
- SemEval-2013 Task 2 subtask B (Twitter): `tweet_id<TAB>user_id<TAB>label<TAB>text`; labels
  positive / negative / neutral, with objective and objective-OR-neutral read as neutral;
  tweets released as "Not Available" are skipped.
- SenTube (Uryupina et al. 2014; automobiles and tablets): a directory of per-video JSON files
  `{"comments": [{"text": ..., "annotation": [labels] or {label: ...}}]}`. Binary product
  polarity: `positive-product` -> positive, `negative-product` -> negative; comments with both or
  neither are skipped. There is no official split: files are read in name order and each class
  is split 75% / 5% / 20% into train / valid / test, in that order (the protocol of Barnes et
  al. 2017), so the split is reproducible.
- SciTail: the TSV release (`premise<TAB>hypothesis<TAB>label`, label entails / neutral; the
  DGEM variant's extra column is ignored) or the SNLI-style JSONL release (sentence1, sentence2,
  gold_label entailment / neutral).
"""

import json
import logging
import os
import re

from .sentence_prediction_data import Example

logger = logging.getLogger(__name__)

SST1_LABELS = ("0", "1", "2", "3", "4")
BINARY_SENTIMENT = ("negative", "positive")
TWITTER_LABELS = ("negative", "neutral", "positive")
SCITAIL_LABELS = ("entails", "neutral")
_PTB_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}
_TREE_TOKENS = re.compile(r"\(|\)|[^\s()]+")


# ---- SST -------------------------------------------------------------------------------
def parse_ptb_tree(line):
    """[(label, words of the phrase)] for every node of one PTB-format SST tree, root first."""
    tokens = _TREE_TOKENS.findall(line)
    pos = 0
    nodes = []

    def node():
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] != "(":
            raise ValueError(f"expected '(' at token {pos} of tree {line[:80]!r}")
        pos += 1
        label = tokens[pos]
        if not label.isdigit():
            raise ValueError(f"node label {label!r} is not a number in tree {line[:80]!r}")
        pos += 1
        slot = len(nodes)
        nodes.append(None)
        words = []
        while pos < len(tokens) and tokens[pos] != ")":
            if tokens[pos] == "(":
                words += node()
            else:
                words.append(_PTB_ESCAPES.get(tokens[pos], tokens[pos]))
                pos += 1
        if pos >= len(tokens):
            raise ValueError(f"unbalanced parentheses in tree {line[:80]!r}")
        pos += 1
        nodes[slot] = (int(label), words)
        return words

    node()
    if pos != len(tokens):
        raise ValueError(f"text after the end of tree {line[:80]!r}")
    return nodes


def sst_label(fine_label, fine_grained):
    """SST-1 keeps 0-4; SST-2 maps 0-1 / 3-4 to negative / positive and drops 2 (None)."""
    if fine_grained:
        return str(fine_label)
    return None if fine_label == 2 else BINARY_SENTIMENT[int(fine_label > 2)]


def read_sst_trees(path, fine_grained, phrases=False):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SST tree file not found: {path!r}")
    examples, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            try:
                nodes = parse_ptb_tree(line.strip())
            except ValueError as e:
                raise ValueError(f"{path} line {n + 1}: {e}") from None
            for k, (fine, words) in enumerate(nodes if phrases else nodes[:1]):
                label = sst_label(fine, fine_grained)
                text = " ".join(words)
                if label is None or (phrases and (text, label) in seen):
                    continue
                seen.add((text, label))
                examples.append(Example(text, label=label, uid=f"{n}" if k == 0 else f"{n}.{k}"))
    return examples


def read_sst_text(path, fine_grained):
    """SST from a TSV with a sentence/label header, or `LABEL sentence` lines."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SST file not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f if line.strip()]
    examples = []
    header = lines[0].split("\t") if lines else []
    if "sentence" in header and "label" in header:
        s_col, l_col = header.index("sentence"), header.index("label")
        rows = [(line.split("\t"), i) for i, line in enumerate(lines[1:], start=2)]
        pairs = [(r[l_col], r[s_col], i) for r, i in rows]
        binary_labels = True  # GLUE SST-2: 0 / 1
        if fine_grained:
            raise ValueError(f"{path} is GLUE's binary SST-2 TSV; SST-1 needs the trees or 0-4 labels")
    else:
        pairs = []
        for i, line in enumerate(lines, start=1):
            m = re.match(r"^(\d+)[\t ](.*)$", line)
            if not m:
                raise ValueError(
                    f"{path} line {i}: expected 'LABEL<tab>sentence' with an integer label, got {line[:60]!r}"
                )
            pairs.append((m.group(1), m.group(2), i))
        binary_labels = all(p[0] in ("0", "1") for p in pairs)
        if binary_labels and fine_grained:
            raise ValueError(f"{path} has only labels 0/1: binary data cannot be read as SST-1 (0-4)")
    for raw_label, text, i in pairs:
        if not raw_label.strip().isdigit():
            raise ValueError(f"{path} line {i}: label {raw_label!r} is not an integer")
        value = int(raw_label)
        if binary_labels:
            if value not in (0, 1):
                raise ValueError(f"{path} line {i}: binary label {value} is not 0 or 1")
            label = BINARY_SENTIMENT[value]
        else:
            if not 0 <= value <= 4:
                raise ValueError(f"{path} line {i}: SST label {value} is not in 0..4")
            label = sst_label(value, fine_grained)
            if label is None:
                continue
        examples.append(Example(text.strip(), label=label, uid=str(i)))
    return examples


def read_sst(files, fine_grained, phrases=False):
    """files: {split: path}; .txt files holding trees are read as trees, anything else as text."""
    splits = {}
    for split, path in files.items():
        if _looks_like_trees(path):
            splits[split] = read_sst_trees(path, fine_grained, phrases=phrases and split == "train")
        else:
            splits[split] = read_sst_text(path, fine_grained)
    return splits, (SST1_LABELS if fine_grained else BINARY_SENTIMENT)


def _looks_like_trees(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SST file not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
    return first.lstrip().startswith("(")


# ---- SemEval-2013 Twitter ---------------------------------------------------------------
def read_semeval2013(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SemEval-2013 file not found: {path!r}")
    examples, unavailable = [], 0
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 4:
                raise ValueError(f"{path} line {i}: expected 'id<TAB>id<TAB>label<TAB>text', got {len(fields)} fields")
            label = fields[2].strip().strip('"').lower()
            text = "\t".join(fields[3:]).strip()
            if label in ("objective", "objective-or-neutral"):
                label = "neutral"
            if label not in TWITTER_LABELS:
                raise ValueError(f"{path} line {i}: label {fields[2]!r} is not positive/negative/neutral/objective")
            if text == "Not Available":
                unavailable += 1
                continue
            examples.append(Example(text, label=label, uid=fields[0]))
    if unavailable:
        logger.warning("%s: skipped %d tweets released as 'Not Available'", path, unavailable)
    return examples


def read_semeval(files):
    return {split: read_semeval2013(path) for split, path in files.items()}, TWITTER_LABELS


# ---- SenTube --------------------------------------------------------------------------
def read_sentube(directory, fractions=(0.75, 0.05)):
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"SenTube directory not found: {directory!r} (expected per-video JSON files)")
    by_class = {label: [] for label in BINARY_SENTIMENT}
    names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    if not names:
        raise ValueError(f"{directory!r} holds no .json files (SenTube's per-video comment files)")
    for name in names:
        path = os.path.join(directory, name)
        with open(path, encoding="utf-8") as f:
            try:
                video = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(video, dict) or "comments" not in video:
            raise ValueError(f"{path}: expected a JSON object with a 'comments' list")
        for k, comment in enumerate(video["comments"]):
            annotation = comment.get("annotation")
            if not annotation:
                continue
            labels = set(annotation) if isinstance(annotation, (list, dict)) else {str(annotation)}
            pos, neg = "positive-product" in labels, "negative-product" in labels
            if pos != neg:
                label = "positive" if pos else "negative"
                by_class[label].append(Example(comment["text"], label=label, uid=f"{name[:-5]}:{k}"))
    splits = {"train": [], "valid": [], "test": []}
    for examples in by_class.values():
        a, b = int(len(examples) * fractions[0]), int(len(examples) * sum(fractions))
        splits["train"] += examples[:a]
        splits["valid"] += examples[a:b]
        splits["test"] += examples[b:]
    for split, examples in splits.items():
        if not examples:
            raise ValueError(f"SenTube {directory!r}: the {split} split is empty (too few annotated comments)")
    return splits, BINARY_SENTIMENT


# ---- SciTail --------------------------------------------------------------------------
def read_scitail_file(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SciTail file not found: {path!r}")
    examples = []
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f if line.strip()]
    jsonl = bool(lines) and lines[0].lstrip().startswith("{")
    for i, line in enumerate(lines, start=1):
        if jsonl:
            row = json.loads(line)
            premise, hypothesis, label = row["sentence1"], row["sentence2"], row["gold_label"]
        else:
            fields = line.split("\t")
            if len(fields) < 3:
                raise ValueError(f"{path} line {i}: expected 'premise<TAB>hypothesis<TAB>label'")
            premise, hypothesis, label = fields[:3]
        label = {"entailment": "entails"}.get(label.strip(), label.strip())
        if label not in SCITAIL_LABELS:
            raise ValueError(f"{path} line {i}: label {label!r} is not entails/entailment/neutral")
        examples.append(Example(premise, hypothesis, label, uid=str(i)))
    return examples


def read_scitail(files):
    return {split: read_scitail_file(path) for split, path in files.items()}, SCITAIL_LABELS


DATASETS = {
    "sst1": "SST fine-grained (5 classes)",
    "sst2": "SST binary (neutral dropped)",
    "semeval2013": "SemEval-2013 Twitter sentiment (3 classes)",
    "sentube": "SenTube product polarity (automobiles or tablets directory)",
    "scitail": "SciTail entailment (entails / neutral)",
}


def read_dataset(name, files=None, directory=None, phrases=False):
    """Dispatch by dataset name; `files` is {split: path} except for SenTube (`directory`)."""
    if name in ("sst1", "sst2"):
        return read_sst(_need_files(name, files), fine_grained=name == "sst1", phrases=phrases)
    if name == "semeval2013":
        return read_semeval(_need_files(name, files))
    if name == "sentube":
        if not directory:
            raise ValueError("sentube needs --input DIR (the automobiles or tablets directory)")
        return read_sentube(directory)
    if name == "scitail":
        return read_scitail(_need_files(name, files))
    raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")


def _need_files(name, files):
    if not files or "train" not in files:
        raise ValueError(f"{name} needs at least --train (and usually --valid, --test) files")
    return files
