#!/bin/sh
# Evaluate this package's model: quickstart/eval.sh [extra slim.eval flags]
set -e
cd "$(dirname "$0")/.."
exec python -m slim.eval --model_name="${MODEL_NAME}" --dataset_dir="${DATASET_DIR:-/dataset}" \
    --checkpoint_path="${CHECKPOINT_DIR:-${OUTPUT_DIR:-/output}}" "$@"
