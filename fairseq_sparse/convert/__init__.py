"""Checkpoint converters into the plugin's fairseq models: Hugging Face BERT (bert.py), written
as complete fairseq checkpoints that fairseq's loaders accept (checkpoint.py)."""

from .bert import BertCheckpoint, convert_bert, hub_kwargs

__all__ = ["BertCheckpoint", "convert_bert", "hub_kwargs"]
