"""Checkpoint converters into the plugin's fairseq models."""
from .bert import BertCheckpoint, convert_bert, hub_kwargs

__all__ = ["BertCheckpoint", "convert_bert", "hub_kwargs"]
