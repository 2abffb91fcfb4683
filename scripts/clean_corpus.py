#!/usr/bin/env python3
"""Step 2: wikiextractor output / books -> cleaned, de-duplicated, sharded sentences.

Usage: python scripts/clean_corpus.py --help  (logic: fairseq_sparse/data/preprocess/clean.py)
"""

import os
import sys

# Runnable from a checkout without `pip install -e .`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_sparse.data.preprocess.clean import main  # noqa: E402

if __name__ == "__main__":
    main()
