#!/usr/bin/env python3
"""Step 4: cleaned shards -> subword tokens, in parallel.

Usage: python scripts/encode_corpus.py --help  (logic: fairseq_sparse/data/preprocess/encode.py)
"""

import os
import sys

# Runnable from a checkout without `pip install -e .`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_sparse.data.preprocess.encode import main  # noqa: E402

if __name__ == "__main__":
    main()
