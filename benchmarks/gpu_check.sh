#!/usr/bin/env bash
# The GPU check of issue 11, one command on one GPU (about 8 minutes at most):
#   bash benchmarks/gpu_check.sh [PYTHON]
# Installs nothing: runs the project from this checkout (PYTHONPATH). Needs torch with CUDA and
# triton for part 1 (kernel ratios vs SDPA flash); part 2 (AMP training words/s) also needs
# fairseq (pip install fairseq-fixed, or its cp312 wheel) and is skipped with a message without it.
# Each part has its own time limit, so part 1's figures come out whatever part 2 does.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${1:-${PYTHON:-python}}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONWARNINGS=ignore
"$PY" -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA device'" || exit 1
timeout 340 "$PY" benchmarks/gpu_check.py --part kernels || echo "kernel part: exit code $? (124: time limit)"
timeout 130 "$PY" benchmarks/gpu_check.py --part training || echo "training part: exit code $? (124: time limit)"
