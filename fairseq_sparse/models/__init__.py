"""Registered fairseq models: sparse_roberta (fairseq's RoBERTa with sparse self-attention) and
its architectures sparse_roberta_{tiny,base,large} and sparsebert_{tiny,base} (DAM defaults)."""
