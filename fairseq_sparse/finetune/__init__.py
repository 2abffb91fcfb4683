"""Fine-tuning: fairseq-train command lines (commands.py), the one-command fine-tune on one's own
files (job.py: tabular, data, runner, evaluation, metrics), and the recipes' CLI conventions (recipe_cli.py)."""
