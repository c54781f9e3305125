#!/bin/sh
# Benchmark a model with this package's code: quickstart/benchmark.sh [extra slim.benchmark flags]
# MODEL_PATH (a SavedModel export dir, or an .onnx file) and OUTPUT_DIR (default /output) from the
# environment; the backend follows from MODEL_PATH.  Writes results.json and summary.txt.
set -e
cd "$(dirname "$0")/.."
model="${MODEL_PATH:?MODEL_PATH is not set (a SavedModel export dir or an .onnx file)}"
case "$model" in
  *.onnx) backend=onnx ;;
  *) backend=tf ;;
esac
exec python -m slim.benchmark "$model" "${OUTPUT_DIR:-/output}" --backend "$backend" \
    --model "${MODEL_NAME}" --precision "${PRECISION:-fp32}" --no-chart "$@"
