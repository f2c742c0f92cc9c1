#!/usr/bin/env bash
# Train a head on preprocessed data (see preprocess/preprocess.sh).
#   bash scripts/train.sh                     # one process (CPU or one GPU)
#   NPROC=4 bash scripts/train.sh             # torchrun, one process per GPU (gloo on CPU)
# Override any setting through the environment, e.g. MODEL_CLASS=bert2span DATASET=openkp.
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
      --max_train_epochs "${EPOCHS:-3}"
      --learning_rate "${LR:-5e-5}"
      --max_token 510 --max_phrase_words 5
      --display_iter 50 --use_viso
      --output_dir results
      "$@")

if [ "$NPROC" -gt 1 ]; then
    # Multi-GPU (add --fp16 or --bf16 on GPUs); multi-node: add --nnodes/--node_rank/--master_addr.
    torchrun --standalone --nproc_per_node "$NPROC" scripts/train.py "${ARGS[@]}"
else
    python scripts/train.py "${ARGS[@]}"
fi
