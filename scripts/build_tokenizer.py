#!/usr/bin/env python3
"""Step 3: train sentencepiece or adopt a BERT/GPT-2 vocabulary; write dict.txt.

Usage: python scripts/build_tokenizer.py --help  (logic: fairseq_sparse/data/preprocess/tokenizer.py)
"""

import os
import sys

# Runnable from a checkout without `pip install -e .`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_sparse.data.preprocess.tokenizer import main  # noqa: E402

if __name__ == "__main__":
    main()
