#!/usr/bin/env bash
# GPU runbook: on a machine with an NVIDIA GPU and the project installed (`make setup` picks the
# CUDA build of torch), run the paper path and every paper-config model for a short fixed budget,
# one step at a time (each under 10 minutes), writing bench/results/gpu_*.json:
#
#   bench/gpu_check.sh prepare        # paper.yaml + paper-smoke overlay to the report (prepares the data)
#   bench/gpu_check.sh molecules      # 8 models x SECONDS_PER_MODEL s of bf16 training + sampling
#   bench/gpu_check.sh structures | sequences | trajectories
#   bench/gpu_check.sh design         # a 10,000-call REINVENT / screening / Graph GA task on the shipped prior
#   bench/gpu_check.sh all            # every step in turn
#
# Each model step checks that the loss falls and that samples decode; a failed check fails the step.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
WORK=${GPU_CHECK_WORK:-resources/gpu-check}
SECONDS_PER_MODEL=${SECONDS_PER_MODEL:-40}
STEP_LIMIT=${STEP_LIMIT:-600}
export DGLBACKEND=pytorch PYTHONHASHSEED=0 PYTHONUNBUFFERED=1 MUJOCO_GL=${MUJOCO_GL:-egl}
export PATH="$(dirname "$PY"):$PATH"

step() {
  case "$1" in
    prepare) timeout "$STEP_LIMIT" "$PY" bench/gpu_check.py --prepare "$WORK" ;;
    molecules | structures | sequences | trajectories)
      timeout "$STEP_LIMIT" "$PY" bench/gpu_check.py --domain "$1" --resources "$WORK/resources" \
        --seconds "$SECONDS_PER_MODEL" ;;
    design)
      timeout "$STEP_LIMIT" "$PY" bench/bench_design.py --only task --budget 10000 --threads 8 \
        --out bench/results/gpu_design.json ;;
    *) echo "unknown step '$1': prepare, molecules, structures, sequences, trajectories, design or all" >&2; exit 2 ;;
  esac
}

nvidia-smi -L || echo "warning: nvidia-smi found no GPU; the checks run on $("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')" >&2
if [ "${1:-all}" = all ]; then
  for s in prepare molecules structures sequences trajectories design; do step "$s"; done
else
  step "$1"
fi
