"""Task data: readers of the official formats (GLUE, SQuAD, the SSAF sets, BBC News), the BERT
WordPiece tokenizer and BPE, and the pre-training corpus pipeline (preprocess/).

Importing the package registers the `bert_wordpiece` BPE with fairseq.
"""
from . import bert_wordpiece_bpe  # noqa: F401  (registers --bpe bert_wordpiece)
