"""publish and fetch: versioned releases of a model in the artifact store (one subtask per model).

    doit publish model=vgg_16 version=1.0.0 store=s3://bucket/zoo
    doit fetch model=vgg_16 version=^1.0 store=s3://bucket/zoo fetch_dir=models/

A release holds the export, the conversions that passed their gate, the benchmark runs of
this export or conversion, and the lineage (data set key, image tags); a bf16 model publishes
only behind its accuracy gate.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

from tasks import cmdline
from tasks.benchmark import benchmark_key
from tasks.common import MODEL
from tasks.convert import convert_dir, convert_key
from tasks.errors import UserError, guarded
from tasks.exports import export_dir, export_digest, gate_task_dep, require_export
from tasks.params import Var, is_release, json_object, release_or_range
from zoobuild import keys, paths

__all__ = ["task_publish", "task_fetch"]

VERSION = Var("version", str, "", "publish: X.Y.Z[-YYYYMMDD] or bleedingedge (empty: bleedingedge); fetch: ^X.Y, ~X.Y.Z, exact or latest",
              check=release_or_range)
STORE = Var("store", str, "", "artifact store: a directory or file://, s3://, gs:// URL (default build/store)")
STORE_OPTIONS = Var("store_options", str, "", "fsspec storage options as JSON, e.g. {\"endpoint_url\": ...}",
                    check=json_object)
ARCH = Var("arch", str, platform.machine(), "publish/fetch: artifact arch")
FETCH_DIR = Var("fetch_dir", str, "", "fetch: where models are unpacked (default build/fetched)")


def _store():
    from artifacts import store as st

    opts = {}
    if STORE_OPTIONS.get():
        try:
            opts = json.loads(STORE_OPTIONS.get())
        except ValueError:
            raise UserError(f"store_options={STORE_OPTIONS.get()!r}: expected a JSON object")
    return st.open_store(STORE.get() or str(paths.BUILD / "store"), **opts)


def _train_marker(export: Path) -> tuple[str | None, dict | None]:
    """The train key behind an export (its completion marker) and that training run's marker."""
    marker = keys.read_marker(export) or {}
    train_hex = (marker.get("parts") or {}).get("inputs", {}).get("train")
    if not train_hex:
        return None, None
    for d in (paths.BUILD / "train").glob(f"*/{train_hex[:12]}"):
        return train_hex, keys.read_marker(d)
    return train_hex, None


def _eval_metrics(export: Path):
    """eval.json of the `doit eval` run of the same training run as the export, when it ran."""
    train_hex, _ = _train_marker(export)
    if not train_hex:
        return None
    for d in sorted((paths.BUILD / "eval").glob("*/*")):
        marker = keys.read_marker(d) or {}
        if (marker.get("parts") or {}).get("inputs", {}).get("train") == train_hex and (d / "eval.json").exists():
            return json.loads((d / "eval.json").read_text())
    return None


def _export_compute(export: Path) -> str:
    """compute= the exported model was trained with (fp32 for exports older than the option)."""
    try:
        return json.loads((export / "export.json").read_text()).get("compute") or "fp32"
    except (OSError, ValueError):
        return "fp32"


def _dataset_key(export: Path):
    """The data set digest the training run was keyed on (lineage through the run cache)."""
    _, marker = _train_marker(export)
    return ((marker or {}).get("parts") or {}).get("inputs", {}).get("dataset")


def publish_key(model: str) -> keys.Key:
    """What a publish is made of; a finished publish of the same key is not repeated."""
    return keys.make_key("publish", entries=["artifacts.release"],
                         params={"version": VERSION.get() or "bleedingedge", "store": STORE.get(),
                                 "arch": ARCH.get()},
                         inputs={"export": export_digest(export_dir(model), model),
                                 "convert": convert_key(model).hex, "benchmark": benchmark_key(model).hex})


def _image_tags(model: str) -> list[str]:
    """The model's image tags in the plan of specs=/image_args= (for the manifest's lineage)."""
    from tasks.images import model_image_tags

    return model_image_tags(model)


def _publish(model: str, version: str, out: str | None = None, key: keys.Key | None = None) -> None:
    from artifacts import release
    from slim import accuracy_gate

    version = version or "bleedingedge"  # the main job publishes to the overwritable channel
    src = export_dir(model)
    require_export(src, model)
    bench = [d for d in (paths.BUILD / "benchmark" / model).glob("*") if keys.is_complete(d)] \
        if (paths.BUILD / "benchmark" / model).exists() else []
    cdir = convert_dir(model)
    bench = [d for d in bench if _benchmarks_this(d, src, cdir)]
    metrics = _eval_metrics(src)
    accuracy_gate.require_for_publish(model, _export_compute(src), metrics)
    release.release(_store(), model, version, export_dir=src,
                    convert_dir=cdir if keys.is_complete(cdir) else None,
                    bench_dirs=sorted(bench), arch=ARCH.get(), eval_metrics=metrics,
                    dataset_key=_dataset_key(src), image_tags=_image_tags(model))
    if out is not None and version == "bleedingedge":
        with keys.atomic_dir(out) as tmp:
            keys.mark_complete(tmp, key, {"model": model, "version": version, "store": STORE.get()})


def _benchmarks_this(bench_dir: Path, export: Path, cdir: Path) -> bool:
    """Only benchmark runs of this export or of this conversion go into the manifest."""
    try:
        path = Path(json.loads((bench_dir / "results.json").read_text())["config"]["model_path"])
    except (OSError, ValueError, KeyError):
        return False
    return path == export or path.parent == cdir


def task_publish():
    """Publish a model version to the artifact store and regenerate the catalog (vars: version, store, arch)."""
    model = MODEL.get()
    if VERSION.get() and not is_release(VERSION.get()) and cmdline.current().runs("publish"):
        raise UserError(f"version={VERSION.get()!r}: publish takes an exact release X.Y.Z or "
                        "X.Y.Z-YYYYMMDD, or bleedingedge; ranges and latest are for fetch")
    key = publish_key(model)
    out = keys.run_dir("publish", model, key)
    yield {
        "name": model,
        "actions": [(guarded(_publish), (model, VERSION.get(), str(out), key))],
        "task_dep": [f"convert:{model}", f"benchmark:{model}"] + gate_task_dep(model),
        # the bleedingedge channel is republished only when something changed; an explicit
        # version always goes to the store, which refuses a second publish of it
        "uptodate": [keys.key_uptodate(key, out) if not VERSION.get() else False],
        "meta": {"key": key, "outdir": out},
        "doc": f"publish {model} {VERSION.get() or 'bleedingedge'} to {STORE.get() or paths.BUILD / 'store'}",
        "verbosity": 2,
    }


def _fetch(model: str, spec: str, dest: str) -> None:
    from artifacts import fetch

    got = fetch.fetch(_store(), model, spec or "latest", Path(dest),
                      arch=ARCH.get() if ARCH.given() else None)
    print(f"fetched {model} {spec or 'latest'} -> {got}")


def task_fetch():
    """Resolve model + version range in the store, download, verify sha256, unpack (vars: version, store, fetch_dir)."""
    model = MODEL.get()
    yield {
        "name": model,
        "actions": [(guarded(_fetch), (model, VERSION.get(), FETCH_DIR.get() or str(paths.BUILD / "fetched")))],
        "uptodate": [False],
        "doc": f"fetch {model} {VERSION.get() or 'latest'}",
        "verbosity": 2,
    }
