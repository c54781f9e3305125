"""What each stage of the graph needs on a cluster, as data: per-stage resource defaults,
how the key inputs of a stage map onto its upstream outputs, and the shard ranges of the
conversion fan-out.  The doit wiring (tasks/pipeline.py) fills the rest from the graph.
"""
from __future__ import annotations

import re

from zoobuild.errors import UserError

# requests per stage when the spec names none (cpu cores, memory)
RESOURCES = {"synthetic": ("1", "1G"), "tfrecords": ("2", "2G"), "train": ("4", "8G"),
             "eval": ("2", "4G"), "export": ("2", "4G"), "convert": ("2", "4G"),
             "benchmark": ("4", "4G"), "publish": ("1", "1G")}

# key input -> (component input it comes from, how the graph spells the upstream key)
KEY_INPUTS = {
    "tfrecords": {"synthetic": ("raw", "{}")},
    "train": {"dataset": ("dataset", "{}")},
    "eval": {"train": ("train", "{}"), "dataset": ("dataset", "{}")},
    "export": {"train": ("train", "{}")},
    "convert": {"export": ("export", "export:{}"), "calibration": ("calibration", "{}")},
    "benchmark:onnx": {"model": ("convert", "convert:{}")},
    "benchmark:tf": {"model": ("export", "export:{}")},
    "publish": {"export": ("export", "export:{}"), "convert": ("convert", "{}"),
                "benchmark": ("benchmark", "{}")},
}

_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def resources(text: str, from_specs=()) -> dict:
    """stage -> (cpu, memory): the per-stage defaults, then the image specs' `resources`
    (from_specs: (stage, "CPU/MEMORY", where) of the images the stages run in), then
    `resources=train=8/16G,benchmark=4/4G`."""
    out = dict(RESOURCES)
    for stage, req, where in from_specs:
        if stage not in RESOURCES:
            raise UserError(f"{where}: resources.{stage}: expected a stage name "
                            f"({', '.join(RESOURCES)})")
        cpu, _, mem = req.partition("/")
        out[stage] = (cpu, mem)
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        stage, _, req = item.partition("=")
        cpu, _, mem = req.partition("/")
        if stage not in RESOURCES or not _QUANTITY.match(cpu) or not _QUANTITY.match(mem):
            raise UserError(f"resources={text!r}: expected STAGE=CPU/MEMORY items like train=4/8G "
                            f"(stages: {', '.join(RESOURCES)})")
        out[stage] = (cpu, mem)
    return out


def shard_ranges(total: int, parts: int) -> list[str]:
    """`parts` contiguous ranges 'lo:hi' covering shards 0..total-1 (train then validation)."""
    if parts < 1:
        raise UserError(f"fan_out={parts}: expected at least 1 conversion task")
    parts = min(parts, total)
    bounds = [round(i * total / parts) for i in range(parts + 1)]
    return [f"{lo}:{hi}" for lo, hi in zip(bounds, bounds[1:])]


def key_inputs(stage: str, key_parts: dict) -> dict:
    """The key inputs of a stage that come from upstream outputs (only those the key has)."""
    table = KEY_INPUTS.get(stage, {})
    return {name: list(src) for name, src in table.items() if name in key_parts["inputs"]}
