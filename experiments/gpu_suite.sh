#!/usr/bin/env bash
# GPU readiness suite (issue 18): kernel parity, rasterizer, tracking and MANO benchmarks in
# under 8 minutes on one GPU, results in experiments/results/*_gpu.json. See
# experiments/gpu_suite.py for what runs and how each step is time-bounded.
#
#   bash experiments/gpu_suite.sh                            # CUDA machine (exit 2 without one)
#   bash experiments/gpu_suite.sh --smoke --out /tmp/smoke   # CPU, tiny sizes (CI)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python}" experiments/gpu_suite.py "$@"
