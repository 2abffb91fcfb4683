"""Task data: readers of GLUE, SQuAD, the SSAF sets and BBC News, BERT's WordPiece (on `tokenizers`)
and the bert_wordpiece BPE (registered on import), and the pre-training corpus pipeline (preprocess/)."""

from . import bert_wordpiece_bpe  # noqa: F401  (registers --bpe bert_wordpiece)
