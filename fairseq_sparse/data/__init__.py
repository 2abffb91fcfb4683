"""Task data: readers of official dataset formats, tokenisers, binarisation.

Importing the package registers the `bert_wordpiece` BPE with fairseq.
"""
from . import bert_wordpiece_bpe  # noqa: F401  (registers --bpe bert_wordpiece)
