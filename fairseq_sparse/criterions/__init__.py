"""Registered fairseq criteria: masked_lm_dam (masked LM plus the DAM's sparsity penalty) and
squad_span (SQuAD start/end spans). fairseq_sparse/__init__.py imports them for --criterion."""
