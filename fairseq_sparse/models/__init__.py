"""Registered fairseq models: sparse_roberta and its architectures."""
