"""Shared helpers for the slim tests (no tests here): a tiny synthetic
ILSVRC converted to slim TFRecords once per session, and slim's train config."""
import json
import os
from pathlib import Path

import pytest

NUM_CLASSES = 5        # + background
TRAIN_PER_CLASS = 48
VAL_PER_CLASS = 12

# A small net at a small size: trains at hundreds of images/s on a CPU.
SMALL = {"model": "mobilenet_v1_025", "train_image_size": 64, "batch_size": 16,
         "optimizer": "momentum", "learning_rate": 0.01, "batch_norm_decay": 0.9,
         "log_every_n_steps": 5, "shuffle_seed": 1}


def slim_dataset(tmp_path_factory) -> Path:
    """Converted TFRecords of a 5-class synthetic set (built once per session)."""
    base = tmp_path_factory.getbasetemp()
    out = base / "slim_tfrecords"
    if (out / "done").exists():
        return out
    from datasets.convert import convert
    from datasets.synthetic import make_mini_ilsvrc

    raw = base / "slim_raw"
    make_mini_ilsvrc(raw, num_classes=NUM_CLASSES, train_per_class=TRAIN_PER_CLASS,
                     val_per_class=VAL_PER_CLASS, image_size=64, seed=0)
    convert(raw, out, train_shards=2, validation_shards=1, workers=1, progress=False)
    (out / "done").write_text("1")
    return out


@pytest.fixture
def dataset_dir(tmp_path_factory):
    return slim_dataset(tmp_path_factory)


def read_history(train_dir):
    lines = Path(train_dir, "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def subprocess_env(**more):
    root = Path(__file__).resolve().parent.parent
    return dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="2", **more)
