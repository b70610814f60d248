#!/usr/bin/env bash
# One prepared accelerator run (under 5 minutes on one GPU): prints the device and writes JSON to OUT
# (default gpu_results/): step times of ew / pcgrad / nash_mtl at T = 2 and 7 (mtl, and PyTorch CUDA
# when installed), vectorised-seed throughput, and census epochs.
#
#   benchmarks/gpu.sh [OUT] [DATA_DIR]
#
# It runs unchanged on a CPU with smaller sizes (the test suite smokes it that way); MTL_GPU_SMOKE=1
# forces the smallest sizes anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_results}
DATA_DIR=${2:-../shared/data}
PY=${PYTHON:-python}
mkdir -p "$OUT"
PLATFORM=$($PY -c "import jax; print(jax.devices()[0].platform)" 2>/dev/null)
$PY -c "import jax; print('devices:', jax.devices(), '| jax', jax.__version__)" 2>/dev/null
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
if [[ "$PLATFORM" == "cpu" || "${MTL_GPU_SMOKE:-0}" == "1" ]]; then
  SIZES=tiny; ROUNDS=1; SEEDS=1,2; EPOCHS=2; ROWS=2048; TASKS=2
else
  SIZES=paper,census; ROUNDS=3; SEEDS=1,10,50; EPOCHS=3; ROWS=0; TASKS=2,7
fi
SYN_ROWS=$([[ "$ROWS" == "0" ]] && echo 50000 || echo "$ROWS")
$PY -m benchmarks.step_time --sizes=$SIZES --methods=ew,pcgrad,nash_mtl --tasks=$TASKS --rounds=$ROUNDS \
  --json="$OUT/step_time.json"
$PY -m benchmarks.seeds_throughput --models=synthetic --methods=ew,pcgrad --seeds=$SEEDS --epochs=2 \
  --synthetic_rows=$SYN_ROWS --json="$OUT/seeds_throughput.json"
if [[ "$ROWS" == "0" && -d "$DATA_DIR" ]]; then
  $PY -m benchmarks.census_epoch --data_dir="$DATA_DIR" --epochs=$EPOCHS --json="$OUT/census_epoch.json"
else
  $PY -m benchmarks.census_epoch --synthetic_rows=$SYN_ROWS --epochs=$EPOCHS --json="$OUT/census_epoch.json"
fi
echo "wrote $OUT/step_time.json $OUT/seeds_throughput.json $OUT/census_epoch.json"
