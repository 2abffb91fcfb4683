"""Registered fairseq tasks that fairseq lacks: squad (SQuAD v1.1/v2.0 span extraction over
binarised question/context windows)."""
