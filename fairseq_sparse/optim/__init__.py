"""Optimizers: fairseq's Adam with parameter groups taken from tags on the parameters."""
