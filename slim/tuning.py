"""Best-known parameters per model, precision and mode: `specs/tuned/<model>.yml`.

A sweep (`sweep`, run by bench/tune.py) measures training and inference images/s over batch
sizes and thread settings, each point in a fresh process (OMP_NUM_THREADS and KMP_* only act
when set before TensorFlow loads), and keeps the fastest point per (precision, mode):

    model: resnet_v1_50
    host: {cores: 2, bf16: true, machine: AMD EPYC x2 flags:6a93d771884c}
    settings:
      fp32:
        training: {batch_size: 8, intra_op_threads: 2, inter_op_threads: 1, OMP_NUM_THREADS: 2,
                   KMP_AFFINITY: granularity=fine,compact,1,0, KMP_BLOCKTIME: 1, images_per_sec: 7.7}

`doit train` takes the batch size and the thread pools, `doit benchmark` the batch size
(``APPLIED``), for every one the user did not give (`apply`); the published manifest and the
catalog show them all.
ZOOBUILD_TUNED_DIR moves the directory (tests).
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

from zoobuild import atomic, machine, paths
from zoobuild.errors import UserError

#: Intel's model-zoo defaults for the OpenMP runtime (recorded; stock TensorFlow's oneDNN uses
#: TensorFlow's own thread pool, so they act only on an OpenMP build)
KMP_AFFINITY = "granularity=fine,compact,1,0"
KMP_BLOCKTIME = 1
ENV_KEYS = ("OMP_NUM_THREADS", "KMP_AFFINITY", "KMP_BLOCKTIME")
#: the settings train (training) and benchmark (inference) take from the file
APPLIED = {"training": ("batch_size", "intra_op_threads", "inter_op_threads"), "inference": ("batch_size",)}


def tuned_dir() -> Path:
    return Path(os.environ.get("ZOOBUILD_TUNED_DIR") or paths.ROOT / "specs" / "tuned")


def tuned_path(model: str) -> Path:
    return tuned_dir() / f"{model}.yml"


def load(model: str) -> dict:
    """The whole tuned file of ``model`` ({} when it has none)."""
    import yaml

    path = tuned_path(model)
    if not path.exists():
        return {}
    try:
        body = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err.__class__.__name__}); re-run bench/tune.py") from None
    if not isinstance(body.get("settings"), dict):
        raise UserError(f"{path}: expected a mapping `settings: {{<precision>: {{<mode>: ...}}}}`")
    return body


def settings(model: str, precision: str = "fp32", mode: str = "training") -> dict:
    """The best-known settings of (model, precision, mode); {} when none were measured."""
    return dict(((load(model).get("settings") or {}).get(precision) or {}).get(mode) or {})


def elsewhere(model: str, precision: str = "fp32", mode: str = "training", given=()) -> str | None:
    """One line when (model, precision, mode) has tuned settings measured on another kind of
    machine than this one (they still apply: a starting point, as the zoos' published
    settings are off their own platforms); None when they are this machine's, or none, or
    when the user gave (``given``: names) every setting the mode would take from them."""
    body = load(model)
    there = (body.get("host") or {}).get("machine")
    here = machine.identity()
    if not there or there == here or not settings(model, precision, mode):
        return None
    if set(APPLIED[mode]) <= set(given):      # the file gives this run nothing
        return None
    return (f"{tuned_path(model).name}: the tuned {precision} {mode} settings were measured on "
            f"{there}, this is {here}; `python bench/tune.py --model {model} --precisions {precision}` re-measures them here")


def apply(model: str, params: dict, given: set, mode: str = "training") -> dict:
    """``params`` with the tuned value of each of the mode's settings (``APPLIED``) the user did
    not give (``given``: the names set on the command line), for the params' compute precision."""
    tuned = settings(model, params.get("compute", "fp32"), mode)
    return {**params, **{n: tuned[n] for n in APPLIED[mode] if n in tuned and n not in given}}


def thread_env(values: dict) -> dict:
    """OMP/KMP environment of a settings dict, as strings (for a process that loads TF)."""
    return {k: str(values[k]) for k in ENV_KEYS if values.get(k) not in (None, "")}


def default_threads(cores: int | None = None) -> list[dict]:
    """A small grid: all cores in one op with one or two ops at a time, and half the cores
    with two ops at a time."""
    n = cores or os.cpu_count() or 1
    grid = [(n, 1), (n, 2), (max(1, n // 2), 2)]
    return [{"intra_op_threads": i, "inter_op_threads": j, "OMP_NUM_THREADS": i,
             "KMP_AFFINITY": KMP_AFFINITY, "KMP_BLOCKTIME": KMP_BLOCKTIME}
            for i, j in dict.fromkeys(grid)]


def measure_point(model, precision, mode, batch_size, threads, steps, warmup, image_size=0) -> dict:
    """One grid point in a fresh process (python -m slim.throughput) with its thread env."""
    cmd = [sys.executable, "-m", "slim.throughput", "--model", model, "--mode", mode,
           "--batch", str(batch_size), "--compute", precision,
           "--intra", str(threads["intra_op_threads"]), "--inter", str(threads["inter_op_threads"]),
           "--steps", str(steps), "--warmup", str(warmup), "--image-size", str(image_size)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **thread_env(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.ROOT), env.get("PYTHONPATH")]))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"tune {model} {precision} {mode} batch {batch_size}: {last}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def sweep(model: str, precisions=("fp32",), modes=("training", "inference"), batch_sizes=(8, 16),
          threads=None, steps: int = 3, warmup: int = 1, image_size: int = 0, write: bool = True,
          measure=measure_point) -> dict:
    """Measure every grid point, keep the fastest per (precision, mode), write the tuned file
    (atomically, merged over the precisions/modes it already holds); returns its body."""
    from slim import precision as prec
    from zoobuild.progress import progress

    for p in precisions:
        prec.require(p, f"tune {model} precision={p}")
    threads = threads or default_threads()
    points = list(itertools.product(precisions, modes, batch_sizes, range(len(threads))))
    body = load(model) or {}
    body = {"model": model, "settings": body.get("settings") or {}, "grid": body.get("grid") or {}}
    best: dict = {}
    with progress(f"tune {model}", total=len(points), unit="points") as bar:
        for p, mode, batch, t in points:
            got = measure(model, p, mode, batch, threads[t], steps, warmup, image_size)
            ips = float(got["images_per_sec"])
            body["grid"].setdefault(p, {}).setdefault(mode, [])
            if (p, mode) not in best:
                body["grid"][p][mode] = []      # this sweep's points replace an older sweep's
            body["grid"][p][mode].append({"batch_size": batch, **threads[t], "images_per_sec": round(ips, 3)})
            if (p, mode) not in best or ips > best[(p, mode)]["images_per_sec"]:
                best[(p, mode)] = {"batch_size": batch, **threads[t], "images_per_sec": round(ips, 3)}
            bar.advance(1, point=f"{p}/{mode}/b{batch}/t{t}", ips=round(ips, 2))
    for (p, mode), values in best.items():
        body["settings"].setdefault(p, {})[mode] = values
    # which machine the figures are of (zoobuild/machine.py: CPU model, usable CPUs, flags digest):
    # they hold for that kind of CPU; another machine re-runs the sweep
    body["host"] = {"cores": os.cpu_count(), "bf16": _host_bf16(), "machine": machine.identity()}
    if write:
        write_file(model, body)
    return body


def _host_bf16() -> bool:
    try:
        from images import cpu
    except ImportError:
        return False
    return cpu.has_bf16()


def write_file(model: str, body: dict) -> Path:
    import yaml

    where = (body.get("host") or {}).get("machine") or "this host"
    head = (f"# Best-known parameters of {model}, measured by bench/tune.py on {where} "
            "(do not edit: re-run the sweep).\n")
    path = tuned_path(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_text(path, head + yaml.safe_dump(body, sort_keys=True, width=100))
