"""Fine-tuning recipes: fairseq-train command lines (commands.py) and the one-command
fine-tune of a checkpoint on one's own labelled TSV/CSV files (tabular.py, pipeline.py)."""
