#!/usr/bin/env bash
# Train a head on preprocessed data (see preprocess/preprocess.sh).
#   bash scripts/train.sh                     # one process (CPU or one GPU)
#   NPROC=4 bash scripts/train.sh             # torchrun, one process per GPU (gloo on CPU)
# Override any setting through the environment, e.g. MODEL_CLASS=bert2span DATASET=openkp.
# The step budget is the paper's (20810 openkp / 73430 kp20k steps at an effective batch of
# 64, scaled to the effective batch) unless STEPS=N or EPOCHS=N is set.
set -euo pipefail
cd "$(dirname "$0")/.."

DATASET=${DATASET:-kp20k}
MODEL_CLASS=${MODEL_CLASS:-bert2joint}
ENCODER=${ENCODER:-default}            # or roberta-base, bert-base-cased, SpanBERT/spanbert-base-cased, a folder
PREPROCESS_FOLDER=${PREPROCESS_FOLDER:-data/prepro_dataset}
NPROC=${NPROC:-1}

ARGS=(--run_mode train
      --dataset_class "$DATASET"
      --model_class "$MODEL_CLASS"
      --pretrain_model_type "$ENCODER"
      --preprocess_folder "$PREPROCESS_FOLDER"
      --per_gpu_train_batch_size "${BATCH:-8}"
      --gradient_accumulation_steps "${ACCUMULATION:-8}"
      --learning_rate "${LR:-5e-5}"
      --max_token 510 --max_phrase_words 5
      --display_iter 50 --use_viso
      --output_dir results
      "$@")
if [ -n "${STEPS:-}" ]; then ARGS+=(--max_train_steps "$STEPS"); fi
if [ -n "${EPOCHS:-}" ]; then ARGS+=(--max_train_epochs "$EPOCHS"); fi

if [ "$NPROC" -gt 1 ]; then
    # Multi-GPU (add --fp16 or --bf16 on GPUs); multi-node: add --nnodes/--node_rank/--master_addr.
    torchrun --standalone --nproc_per_node "$NPROC" scripts/train.py "${ARGS[@]}"
else
    python scripts/train.py "${ARGS[@]}"
fi
