"""torch.nn pieces the models build: SparseMultiheadAttention (fairseq's, with sparse normalisers,
masks and head hooks) and EncoderAttentionMask (the fixed, learned or file mask of each layer)."""
