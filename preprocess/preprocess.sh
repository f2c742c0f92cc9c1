#!/usr/bin/env bash
# Worked example: preprocess the three dataset classes from the shared corpora.
# Override any default, e.g.  DATASETS=/data/raw OUTPUT=/data/prepro bash preprocess/preprocess.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATASETS="${DATASETS:-$ROOT/../shared/datasets}"
OUTPUT="${OUTPUT:-$ROOT/data/prepro_dataset}"
LIAAD_ZIP="${LIAAD_ZIP:-$DATASETS/liaad/WikiNews.zip}"
LIAAD_NAME="${LIAAD_NAME:-wikinews}"
PYTHON="${PYTHON:-python}"
# Lets the example run from a checkout that is not pip-installed.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

"$PYTHON" "$ROOT/preprocess/preprocess.py" --dataset_class openkp \
    --source_dataset_dir "$DATASETS" --output_path "$OUTPUT"

"$PYTHON" "$ROOT/preprocess/preprocess.py" --dataset_class kp20k \
    --source_dataset_dir "$DATASETS" --output_path "$OUTPUT" --max_phrase_words 5

"$PYTHON" "$ROOT/preprocess/preprocess.py" --dataset_class multidata \
    --source_dataset_dir "$LIAAD_ZIP" --dataset_name "$LIAAD_NAME" --output_path "$OUTPUT" \
    --split_seed 42 --split_ratio 0.7 0.15 0.15
