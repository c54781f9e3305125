#!/bin/sh
# Self-test: train this package's model ($MODEL_NAME) for two steps on a tiny synthetic
# ImageNet-style set generated here, writing everything under ${OUTPUT_DIR:-/output}.
# Used by the model images' `train-two-steps` image test (run as the caller's uid).
set -e
cd "$(dirname "$0")/.."
out="${OUTPUT_DIR:-/output}"
python - "$out" "${MODEL_NAME:?MODEL_NAME is not set}" <<'PY'
import json
import os
import sys
from pathlib import Path

from datasets.convert import convert
from datasets.synthetic import make_mini_ilsvrc

out, model = Path(sys.argv[1]), sys.argv[2]
make_mini_ilsvrc(out / "raw", num_classes=2, train_per_class=4, val_per_class=2, image_size=64, seed=0)
convert(out / "raw", out / "tfrecords", train_shards=1, validation_shards=1, workers=1, progress=False)
compute = "bf16" if os.environ.get("PRECISION") == "bf16" else "fp32"   # the image's precision
job = {"cfg": {"model": model, "steps": 2, "batch_size": 2, "log_every_n_steps": 1, "compute": compute},
       "dataset_dir": str(out / "tfrecords"), "train_dir": str(out / "train")}
(out / "job.json").write_text(json.dumps(job))
PY
python -m slim.cli train --config "$out/job.json"
ls "$out/train"
