#!/usr/bin/env bash
# The checks of the GPU path, in one go, on a machine with a CUDA device and this repository's
# dependencies installed: tests/test_cuda.py (a run with use_cuda=True, resumed on the CPU; GPU
# gradients equal to the CPU's; the CPU acting copy), the cost of one update on the CPU and on the
# GPU, and the wall time per env step against QMIX at its fastest (the CPU), interleaved in 3
# rounds: SALE-MB on the GPU acting on the CPU (the default) and on the GPU, QMIX on the GPU; then
# SALE-MB and GRU-QMIX on the CPU, 3 rounds (one round once gave a QMIX twice as slow as in every
# other). About 5 minutes on an H200 machine. Logs go to $OUT (default /tmp/gpu_check).
# A GPU machine with torch but without network (as the H200 lease was) takes the rest as wheels
# made elsewhere for its Python: those used there were sacred==0.8.7 docopt-ng jsonpickle munch
# GitPython gitdb smmap pymongo==4.20.1 dnspython gymnasium==1.3.0 farama-notifications
# lbforaging==2.0.0 pyglet six setuptools==80.9.0 (`pip download --no-deps --only-binary=:all:
# --python-version 3.12 ...`, installed with `pip install --no-index --no-deps --target DIR` and
# PYTHONPATH=DIR).
#     bash bench/gpu_check.sh [python]
set -o pipefail
PYTHON=${1:-python}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/gpu.txt"
"$PYTHON" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), flush=True)" 2>&1 | tee -a "$OUT/gpu.txt" || exit 1
"$PYTHON" -m pytest tests/test_cuda.py -v -p no:cacheprovider -W ignore::DeprecationWarning 2>&1 | tee "$OUT/test_cuda.log"
"$PYTHON" bench/update_cost.py --device cpu,cuda qmix qmix_gru sale_mb sale_mb_no_wm 2>&1 | tee "$OUT/update_cost.log"
"$PYTHON" bench/wall_ratio.py --steps 8000 --rounds 3 --algs qmix "sale_mb use_cuda=True" \
    "sale_mb use_cuda=True act_on_cpu=False" "qmix use_cuda=True" 2>&1 | tee "$OUT/wall_ratio_cuda.log"
"$PYTHON" bench/wall_ratio.py --steps 8000 --rounds 3 --algs qmix sale_mb qmix_gru 2>&1 | tee "$OUT/wall_ratio_cpu.log"
