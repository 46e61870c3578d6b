#!/usr/bin/env bash
# Generate the counterfactual training data and train the shipped model on one CUDA GPU.
#
#   bash models/train_gpu.sh [OUT_DIR]        (default runs/gpu_train)
#
# The same two commands as on a CPU (README "Training"), with the GPU sizes: the data is the
# documented `prescient data generate` set (seeds 0-74 on four maps, four ego-plan branches,
# ~30,000 samples) with one worker per core, and training is a fixed schedule of STEPS optimiser
# steps, so the result does not depend on how fast the machine is. MINUTES is only a safety net:
# if it stops the run, summary.json says complete=false and a re-run resumes the schedule.
# Environment: PRESCIENT (command, default `prescient`), STEPS, BATCH, MINUTES, SEEDS, WORKERS,
# DATA, DEVICE.
set -euo pipefail
out=${1:-runs/gpu_train}
cli=${PRESCIENT:-prescient}
steps=${STEPS:-4000}
batch=${BATCH:-32}
minutes=${MINUTES:-4}
seeds=${SEEDS:-0-74}
workers=${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 1 : 1 ))}
data=${DATA:-$out/data}
device=${DEVICE:-cuda}  # cpu: a dry run of this script on a machine without a GPU
mkdir -p "$out"

if [ "$device" = cuda ]; then
  python3 -c "import torch; print('gpu:', torch.cuda.get_device_name(), 'torch', torch.__version__)"
fi

t0=$(date +%s)
$cli data generate --out "$data" --maps intersection,t_junction,arterial,roundabout --seeds "$seeds" \
  --duration 60 --stride 5 --agents 40 --night-fraction 0.3 --branches keep,slow,stop,route \
  --workers "$workers"
t1=$(date +%s)
echo "data: $((t1 - t0)) s with $workers workers"

$cli train-sim --data "$data" --out "$out/model" --device "$device" --threads 4 \
  --decoder basis --plan-attention --pair-fraction 0.5 --mixture-weight 0.1 \
  --batch-size "$batch" --max-steps "$steps" --val-every 1000 --val-max-samples 480 \
  --minutes "$minutes" || rc=$?
t2=$(date +%s)
echo "train: $((t2 - t1)) s (exit ${rc:-0}; 3 = stopped by MINUTES, resumable)"
exit "${rc:-0}"
