#!/usr/bin/env bash
# The GPU checks of issue 11 (section 4), as one script for a lent GPU machine:
#   bash benchmarks/gpu_checks.sh DATA_DIR OUT_DIR [TRAIN_SECONDS]
# 1. the CUDA tests (device, tiles cut on the GPU, AMP training, prediction);
# 2. benchmarks/bench_gpu.py (training step and prediction at the paper's width);
# 3. the faithful ISBI pipeline, pipelines/isbi2012/run.py --config config_gpu.yaml
#    --device cuda, trained for TRAIN_SECONDS (default 300) and evaluated.
# Each stage has its own time limit and writes its log to OUT_DIR. DEVICE (cuda),
# CONFIG and FEATURES (64) may be set to try the script on the CPU with a small network.
set -u
data=$1 out=$2 seconds=${3:-300}
device=${DEVICE:-cuda} features=${FEATURES:-64}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
{
  nvidia-smi -L
  python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
  grep -m1 'model name' /proc/cpuinfo; nproc
} 2>&1 | tee "$out/env.log"
timeout 110 python3 -m pytest -q -rs -W default -p no:cacheprovider tests/test_device.py \
  tests/training/test_tiles.py tests/training/test_loop.py tests/inference/test_predictor.py \
  2>&1 | tail -25 | tee "$out/tests.log"
timeout 110 python3 benchmarks/bench_gpu.py --device "$device" --features "$features" --isbi-dir "$data" 2>&1 \
  | tail -20 | tee "$out/bench_gpu.log"
config=$(mktemp --suffix .yaml)
cp "${CONFIG:-pipelines/isbi2012/config_gpu.yaml}" "$config"
echo "time_limit: $seconds" >> "$config"
run=$(mktemp -d)
timeout $((seconds + 100)) python3 pipelines/isbi2012/run.py --config "$config" --device "$device" \
  --data "$data" --out "$run" 2>&1 | tr '\r' '\n' | grep -v 'it/s\]' | tail -40 | tee "$out/pipeline.log"
cp "$run"/results.md "$run"/results.json "$run"/train/full/metrics.jsonl "$out"/ 2>/dev/null
cp "$run"/train/full/*.png "$out"/ 2>/dev/null
ls -la "$out"
