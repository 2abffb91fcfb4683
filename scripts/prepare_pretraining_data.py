#!/usr/bin/env python3
"""All steps: raw corpora -> DATA/shard0:DATA/shard1:...

Usage: python scripts/prepare_pretraining_data.py --help  (logic: fairseq_sparse/data/preprocess/pipeline.py)
"""

import os
import sys

# Runnable from a checkout without `pip install -e .`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_sparse.data.preprocess.pipeline import main  # noqa: E402

if __name__ == "__main__":
    main()
