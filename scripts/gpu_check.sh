#!/usr/bin/env bash
# The one GPU check: scripts/gpu_check.py runs its sections in one Python process (its docstring
# says what each measures, docs/benchmarks/gpu.md#the-check-ready-to-run the caps and why).
#
#   bash scripts/gpu_check.sh --prepare /path/to/datasets [--official CLONE] [--text_ckpt DIR]
#                                          # here, once: .gpu_data/ (git-ignored) to carry to the GPU
#   bash scripts/gpu_check.sh              # on the GPU machine; results go to $OUT (or output/gpu_check)
#   GPU_CHECK_DEVICE=cpu bash scripts/gpu_check.sh   # a dry run of every section on a CPU, tiny sizes
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
elif [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch' 2>/dev/null; then
    PY=.venv/bin/python
else
    PY=python3
fi
# A hard stop past the check's own budget (420 s on a GPU, counted from after torch's import),
# should a section hang where the check cannot interrupt it: TERM at 470 s, KILL 10 s later, so the
# whole command ends within 8 minutes; a CPU dry run takes far longer.
if [ "${GPU_CHECK_DEVICE:-cuda}" = cpu ]; then HARD=${GPU_CHECK_HARD_LIMIT:-21600}; else HARD=${GPU_CHECK_HARD_LIMIT:-470}; fi
exec timeout --kill-after=10 "$HARD" "$PY" scripts/gpu_check.py "$@"
