#!/usr/bin/env bash
# The GPU check of issue 11, one command on one GPU (about 8 minutes at most):
#   bash benchmarks/gpu_check.sh [PYTHON]
# Installs nothing: runs the project from this checkout (PYTHONPATH). Needs torch with CUDA and
# triton for part 1 (kernel ratios vs SDPA flash); part 2 (AMP training words/s) also needs
# fairseq (pip install fairseq-fixed, or its cp312 wheel) and is skipped with a message without it.
# Part 3 compares AdaSplash v1 when the adasplash package imports (nothing is installed).
# Each part has its own time limit, so part 1's figures come out whatever the others do; any part
# that fails or runs out of time makes the script say so at the end and exit with status 1.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${1:-${PYTHON:-python}}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONWARNINGS=ignore
"$PY" -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA device'" || exit 1
failed=()
run_part() {  # run_part NAME SECONDS: one part under its own time limit
    timeout "$2" "$PY" benchmarks/gpu_check.py --part "$1"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "!! $1 part: exit code $rc$([ "$rc" -eq 124 ] && echo ' (time limit)')" >&2
        failed+=("$1")
    fi
}
run_part kernels 290
run_part adasplash 45
run_part training 140
if [ "${#failed[@]}" -ne 0 ]; then
    echo "GPU check FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "GPU check passed"
