#!/usr/bin/env bash
# Decode and score a checkpoint: bash scripts/test.sh results/RUN/best [extra flags]
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKPOINT=${1:?usage: scripts/test.sh CHECKPOINT_DIR [flags]}
shift
python scripts/test.py --run_mode test \
    --dataset_class "${DATASET:-kp20k}" \
    --preprocess_folder "${PREPROCESS_FOLDER:-data/prepro_dataset}" \
    --eval_checkpoint "$CHECKPOINT" \
    --per_gpu_test_batch_size "${BATCH:-32}" \
    --output_dir results \
    "$@"
