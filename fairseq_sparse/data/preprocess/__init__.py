"""Pre-training corpus preparation, raw Wikipedia / BookCorpus -> sharded fairseq data-bin, one module per step:
extract, clean, tokenizer, encode, binarize (each with main(argv) and a script in scripts/); pipeline runs them all."""
