#!/bin/sh
# Train this package's model: quickstart/train.sh [extra slim.train flags]
# DATASET_DIR (tfrecords, default /dataset) and OUTPUT_DIR (default /output) from the environment.
set -e
cd "$(dirname "$0")/.."
exec python -m slim.train --model_name="${MODEL_NAME}" --dataset_dir="${DATASET_DIR:-/dataset}" \
    --train_dir="${OUTPUT_DIR:-/output}" "$@"
