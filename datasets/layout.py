"""Names fixed by ImageNet's distribution and by slim's TFRecord contract."""
from __future__ import annotations

import re
from pathlib import Path

from zoobuild import atomic

# The raw files, exactly as ImageNet distributes them (plus slim's labels list).
TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
BBOX_TAR = "ILSVRC2012_bbox_train_v2.tar.gz"
VAL_LABELS = "imagenet_2012_validation_synset_labels.txt"
# Optional, slim's `synset<TAB>human readable name` list; without it class text is the synset.
METADATA = "imagenet_metadata.txt"

SPLITS = ("train", "validation")
# slim's shard counts for the full ILSVRC2012 splits, and the sizes of those splits
SLIM_SHARDS = {"train": 1024, "validation": 128}
ILSVRC2012_SIZES = {"train": 1_281_167, "validation": 50_000}
LABELS_FILE = "labels.txt"
MANIFEST = "manifest.json"          # the whole conversion: splits, shards, sizes
REPORT = "conversion_report.json"   # skipped and re-encoded images, speed
SHARD_MANIFESTS = "manifests"       # one small JSON per finished shard
BACKGROUND = "background"

_SHARD_RE = re.compile(r"^(train|validation)-(\d{5})-of-(\d{5})$")


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}"


def parse_shard_name(name: str):
    """(split, index, num_shards) for a shard file name, else None."""
    m = _SHARD_RE.match(name)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def write_labels(out_dir, synsets, filename: str = LABELS_FILE) -> Path:
    """slim's dataset_utils format: one `label:name` line; 0 is background, 1.. sorted synsets."""
    lines = [f"0:{BACKGROUND}"] + [f"{i}:{s}" for i, s in enumerate(synsets, start=1)]
    return atomic.write_text(Path(out_dir) / filename, "\n".join(lines) + "\n")


def read_labels(dataset_dir, filename: str = LABELS_FILE) -> dict[int, str]:
    """Inverse of write_labels (and of slim's dataset_utils.read_label_file)."""
    out = {}
    for line in (Path(dataset_dir) / filename).read_text().splitlines():
        if line.strip():
            index, _, name = line.partition(":")
            out[int(index)] = name
    return out
