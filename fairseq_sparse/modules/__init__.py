"""torch.nn pieces that fairseq builds: the sparse MultiheadAttention and its encoder layer."""
