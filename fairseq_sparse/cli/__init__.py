"""Console entry points (fairseq-sparse-env, -analyze, -export-mask, -convert-bert, -finetune):
each parses its arguments, then makes one call into the package."""
