#!/usr/bin/env python3
"""Step 1: Wikipedia XML dump -> wikiextractor output.

Usage: python scripts/extract_wikipedia.py --help  (logic: fairseq_sparse/data/preprocess/extract.py)
"""

import os
import sys

# Runnable from a checkout without `pip install -e .`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_sparse.data.preprocess.extract import main  # noqa: E402

if __name__ == "__main__":
    main()
