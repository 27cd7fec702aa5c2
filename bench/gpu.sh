#!/usr/bin/env bash
# Trials/hour and GPU utilisation of mlsweep sweeps packed 1, 4 and 8 trials per GPU
# (resources gpu 1, 0.25, 0.125): the quickstart grid (24 of its trials) and a CIFAR-10-shaped
# sweep (random uint8 images in the official layout, convnet, 3 epochs, 16 trials); then the
# trainer-throughput benchmark on the GPU; then packed trials (`run_trials`, packs of 1, 8, 32
# and 64 members on the quickstart's configs: trials/hour and peak memory, bench/gpu_packs.py).
# About 10-12 minutes on one H200.
#
#   bash bench/gpu.sh          from the repository root, after `make install`
#
# Uses one GPU (CUDA_VISIBLE_DEVICES, default 0). Per-sweep time limit: SWEEP_TIMEOUT (150 s).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "bench/gpu.sh: no NVIDIA GPU here (nvidia-smi missing or failing)" >&2
    exit 1
fi
[[ -x .venv/bin/mlsweep ]] || { echo "bench/gpu.sh: run 'make install' first" >&2; exit 1; }

export RAY_AUTH_MODE=disabled RAY_ADDRESS=local CUDA_DEVICE_ORDER=PCI_BUS_ID
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
SWEEP_TIMEOUT=${SWEEP_TIMEOUT:-150}
OUT=$(mktemp -d -t mlsweep-gpu-XXXXXX)
TABLE="$OUT/results.tsv"
GPU_INDEX=${CUDA_VISIBLE_DEVICES%%,*}

write_sweep() {  # name, gpu share per trial, trials per GPU, parameters (YAML lines)
    cat > "$OUT/$1.yaml" <<EOF
name: $1
method: grid
metric: {name: map_at_r, goal: maximize}
parameters:
$4
resources: {cpu: 1, gpu: $2}
max_concurrent_trials: $3
max_failures: 1
storage: $OUT/runs
EOF
    .venv/bin/mlsweep plan "$OUT/$1.yaml" >/dev/null
}

QUICKSTART='  loss:       {values: [contrastive, triplet]}
  dataset:    {values: [synthetic, digits]}
  margin:     {values: [0.2, 0.5, 1.0]}
  seed:       {values: [0, 1]}
  epochs:     {value: 20}
  batch_size: {value: 128}
  lr:         {value: 1.0e-3}'
CIFAR="  loss:       {values: [contrastive, triplet]}
  dataset:    {value: cifar10}
  split:      {value: official}
  data_dir:   {value: $OUT/data}
  margin:     {values: [0.2, 0.5]}
  seed:       {values: [0, 1, 2, 3]}
  epochs:     {value: 3}
  batch_size: {value: 256}"

.venv/bin/python -c "import sys; from pathlib import Path; from bench.throughput import write_cifar; \
write_cifar(Path(sys.argv[1]), 10000)" "$OUT/data"

printf 'sweep\ttrials/GPU\ttrials\twall s\ttrials/hour\tmean GPU util %%\tpeak memory MiB\n' > "$TABLE"
run_sweep() {  # sweep file stem, label, trials per GPU
    local name=$1 samples="$OUT/$1.gpu.csv" status=0 start end trials
    nvidia-smi -i "$GPU_INDEX" --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits \
        -l 1 > "$samples" &
    local sampler=$!
    echo "$(date -u +%T) $name: $3 trials per GPU ..."
    start=$(date +%s.%N)
    timeout "$SWEEP_TIMEOUT" .venv/bin/mlsweep launch "$OUT/$name.yaml" > "$OUT/$name.log" 2>&1 || status=$?
    end=$(date +%s.%N)
    kill "$sampler" && wait "$sampler" 2>/dev/null || true
    trials=$( (find "$OUT/runs/$name/results/trials" -name '*.parquet' 2>/dev/null || true) | wc -l)
    awk -F', *' -v label="$2" -v per="$3" -v n="$trials" -v s="$start" -v e="$end" -v st="$status" '
        { util += $1; rows++; if ($2 > peak) peak = $2 }
        END { wall = e - s; note = st == 0 ? "" : (st == 124 ? " (timed out)" : " (exit " st ")")
              printf "%s%s\t%d\t%d\t%.0f\t%.0f\t%.0f\t%d\n", label, note, per, n, wall,
                     n * 3600 / wall, rows ? util / rows : 0, peak }' "$samples" >> "$TABLE"
}

for per in 1 4 8; do
    share=$(awk -v p="$per" 'BEGIN { print 1 / p }')
    write_sweep "quickstart-$per" "$share" "$per" "$QUICKSTART"
    write_sweep "cifar-$per" "$share" "$per" "$CIFAR"
done
for per in 1 4 8; do
    run_sweep "quickstart-$per" quickstart "$per"
    run_sweep "cifar-$per" cifar10-shaped "$per"
done

echo "## GPU sweeps: $(nvidia-smi -i "$GPU_INDEX" --query-gpu=name --format=csv,noheader), $(date -u '+%Y-%m-%d %H:%M UTC')"
column -t -s $'\t' "$TABLE"
echo
timeout 180 .venv/bin/python -m bench --quick --only throughput | tee "$OUT/throughput.md" \
    || echo "throughput benchmark failed or timed out (see above)"
echo
echo "## Packed trials on the GPU (run_trials, one process)"
timeout "${PACK_TIMEOUT:-300}" .venv/bin/python -m bench.gpu_packs --device cuda --sizes 1 8 32 64 \
    | tee "$OUT/packs.tsv" | column -t -s $'\t' || echo "packed-trials benchmark failed or timed out (see above)"
echo "results: $TABLE, $OUT/throughput.md, $OUT/packs.tsv; sweep logs and runs: $OUT"
