"""Pre-training corpus preparation: raw Wikipedia / BookCorpus -> sharded fairseq data-bin.

Steps (each a module with `main(argv)`, each wrapped by a script in `scripts/`):

1. `extract`   enwiki-*-pages-articles*.xml.bz2 -> wikiextractor output (AA/wiki_00, ...)
2. `clean`     wikiextractor output and/or a directory of books -> one sentence per line, a blank
               line between documents, de-duplicated, split into `--num-shards` shards by a hash of
               the document (so every shard mixes every source)
3. `tokenizer` train sentencepiece on a sample, or adopt a BERT vocab.txt / GPT-2 BPE files;
               writes the fairseq dict.txt
4. `encode`    shards -> token text, in parallel over the cores
5. `binarize`  `fairseq-preprocess --only-source --srcdict dict.txt` per shard -> DATA/shardK
`pipeline` runs them all. Every step streams (a corpus never has to fit in memory), writes to a
temporary name and renames, records a completion marker so a re-run skips finished work, and
reports its counts as JSON on stdout.
"""
