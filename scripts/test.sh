#!/usr/bin/env bash
# Decode and score a checkpoint: bash scripts/test.sh results/RUN/best [extra flags]
# The dataset class is the checkpoint's unless DATASET is set; results go to a new folder
# under results/ each time.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKPOINT=${1:?usage: scripts/test.sh CHECKPOINT_DIR [flags]}
shift
ARGS=(--run_mode test
      --preprocess_folder "${PREPROCESS_FOLDER:-data/prepro_dataset}"
      --eval_checkpoint "$CHECKPOINT"
      --per_gpu_test_batch_size "${BATCH:-32}"
      --output_dir results
      "$@")
if [ -n "${DATASET:-}" ]; then ARGS+=(--dataset_class "$DATASET"); fi
python scripts/test.py "${ARGS[@]}"
