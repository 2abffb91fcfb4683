"""Optimizers: adam_groups (fairseq's Adam with parameter groups taken from tags on the
parameters) and the native fused AdamW fairseq's Adam gets on CUDA when apex has none."""
