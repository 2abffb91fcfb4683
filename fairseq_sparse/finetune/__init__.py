"""Fine-tuning: fairseq-train command lines (commands.py), the one-command fine-tune on one's own
TSV/CSV files (tabular.py, pipeline.py), and the recipes' shared CLI conventions (recipe_cli.py)."""
