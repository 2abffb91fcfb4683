"""Registered fairseq criteria: masked_lm_dam (masked LM plus the DAM's sparsity penalty),
squad_span (SQuAD start/end spans), masked_lm_sparse and sentence_prediction_sparse (the stock
criteria plus the attention statistics; attention_stats.py). fairseq_sparse/__init__.py imports
them for --criterion."""
