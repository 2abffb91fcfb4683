#!/usr/bin/env python3
"""Step 5: token files -> fairseq-preprocess binary shards.

Usage: python scripts/binarize_shards.py --help  (logic: fairseq_sparse/data/preprocess/binarize.py)
"""

import os
import sys

# Runnable from a checkout without `pip install -e .`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_sparse.data.preprocess.binarize import main  # noqa: E402

if __name__ == "__main__":
    main()
