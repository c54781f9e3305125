#!/bin/sh
# Benchmark this package's model: quickstart/benchmark.sh [extra slim.benchmark flags]
set -e
cd "$(dirname "$0")/.."
exec python -m slim.benchmark --model_name="${MODEL_NAME}" --precision="${PRECISION:-fp32}" "$@"
