"""Assemble one release of a model from build outputs and publish it.

    release(store, "vgg_16", "1.0.0", export_dir=..., convert_dir=..., bench_dirs=[...])

The tarball holds `saved_model/` (+ export.json), `onnx/model.<precision>.onnx` for every
precision that passed its parity gate, `parity.json` and `benchmark/<run>.json`.  A
converted file is only packed when its sha256 still equals the one the gate recorded:
a file changed or rejected after the gate never reaches the store.
"""
from __future__ import annotations

import json
import platform
import tempfile
from pathlib import Path

from artifacts import catalog, package, store as st
from zoobuild import gitrev
from zoobuild.errors import UserError


# what the conversion gate measured, per precision (slim.convert.gate), kept with each artifact
GATE_FIGURES = ("data", "top1", "fp32_top1", "top1_ratio", "top1_agreement", "clear", "samples", "max_abs")


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def git_revision(root: Path) -> dict:
    return gitrev.revision(root)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def image_lineage(build: Path, model: str, tags=()) -> dict | None:
    """The model image's tag, key and id (build/images.json) and pushed digest (build/push.json):
    the first of `tags` (the model's image tags in the caller's plan) that was built."""
    built, pushed = _read_json(build / "images.json"), _read_json(build / "push.json")
    for tag in tags:
        entry = built.get(tag)
        if isinstance(entry, dict):
            push = pushed.get(tag) if isinstance(pushed.get(tag), dict) else {}
            return {"tag": tag, "key": entry.get("key"), "id": entry.get("id"),
                    "digest": push.get("digest") if push.get("image_id") in (None, entry.get("id")) else None,
                    "remote": push.get("remote")}
    return None


def _dataset_key(info: dict, params: dict):
    ds = info.get("dataset")
    return (info.get("dataset_key") or params.get("dataset_key")
            or (ds.get("key") if isinstance(ds, dict) else None))


def build_manifest(model: str, export_dir: Path, convert_report: dict | None, benchmarks: dict,
                   eval_metrics: dict | None, root: Path, build: Path, signature: dict,
                   weights_sha256: str, artifacts: list[dict], dataset_key: str | None = None,
                   image_tags=()) -> dict:
    from slim import convert

    info = convert.export_info(export_dir)
    params = info.get("training_params") or info.get("params") or {}
    return {
        "schema": 1,
        "model": model,
        "signature": signature,
        "weights_sha256": weights_sha256,
        "artifacts": artifacts,
        "source": git_revision(root),
        "image": image_lineage(build, model, image_tags),
        "dataset": {"key": dataset_key or _dataset_key(info, params)},
        "training": {"params": params, "export_key": info.get("key"),
                     "global_step": info.get("global_step")},
        "eval": eval_metrics or info.get("eval") or info.get("metrics"),
        "benchmark": benchmarks,
        "parity": {p: {k: r.get(k) for k in ("passed", "max_abs", "top1_agreement", "tolerance", "reason",
                                             *GATE_FIGURES)}
                   for p, r in (convert_report or {}).get("results", {}).items()},
        "converters": (convert_report or {}).get("converters") or convert.versions(),
        "conversion": {k: (convert_report or {}).get(k) for k in ("batch_size", "opset", "nchw",
                                                                   "keep_io_types", "calibration")},
        "platform": {"machine": platform.machine(), "python": platform.python_version()},
    }


def _benchmark_entry(results: dict) -> tuple[str, dict]:
    c = results["config"]
    fmt = "savedmodel" if c["backend"] == "tf" else "onnx"
    key = f"{fmt}-{c['precision']}"
    if c["mode"] == "accuracy":
        return key, {"top1": results["top1"], "top5": results["top5"], "images": results["images"]}
    return key, {"throughput_ips": results["offline"]["throughput_ips"],
                 "offline_batch": results["offline"]["batch"],
                 "latency_ms": {k: v for k, v in results["single_stream"]["latency_ms"].items()},
                 "query_batch": results["single_stream"]["query_batch"],
                 "instances": c["instances"], "valid": all(results["validity"].values())}


def collect_benchmarks(bench_dirs) -> dict:
    out: dict[str, dict] = {}
    for d in bench_dirs:
        p = Path(d) / "results.json"
        if p.exists():
            key, entry = _benchmark_entry(json.loads(p.read_text()))
            out.setdefault(key, {}).update(entry)
    return out


def release(store: st.Store, model: str, version: str, *, export_dir, convert_dir=None, bench_dirs=(),
            precisions=None, arch: str | None = None, eval_metrics=None, dataset_key=None, root=None, build=None,
            image_tags=(), progress=print) -> dict:
    """Pack, publish and re-catalog; returns the stored manifest.  image_tags: the model's image
    tags in the caller's plan (inference first); the first one built is the manifest's image."""
    from slim import convert
    from zoobuild import paths

    root = Path(root or paths.ROOT)
    build = Path(build or paths.BUILD)
    arch = arch or platform.machine()
    export_dir = Path(export_dir)
    sm = convert.find_saved_model(export_dir)
    report = None
    if convert_dir:
        rp = Path(convert_dir) / "report.json"
        if not rp.exists():
            raise UserError(f"{convert_dir}: no report.json (run `doit convert model={model}` first)")
        report = json.loads(rp.read_text())
    signature = (report or {}).get("signature") or convert.saved_model_signature(export_dir)
    weights = convert.weights_digest(export_dir)

    entries = {"saved_model": sm}
    if (export_dir / "export.json").exists():
        entries["export.json"] = export_dir / "export.json"
    fp32_gate = ((report or {}).get("results") or {}).get("fp32") or {}
    artifacts = [{"format": "savedmodel", "precision": "fp32", "file": "saved_model", "size": _tree_size(sm),
                  "gate": ({"data": fp32_gate.get("data"), "top1": fp32_gate.get("fp32_top1")}
                           if fp32_gate.get("data") else None)}]
    wanted = precisions if precisions is not None else (report or {}).get("passed", [])
    for p in wanted:
        r = (report or {}).get("results", {}).get(p)
        if not r:
            raise UserError(f"precision {p}: not converted in {convert_dir} (converted: "
                            f"{', '.join((report or {}).get('results', {})) or 'none'})")
        if not r.get("passed"):
            raise UserError(f"precision {p}: failed the parity gate ({r.get('reason')}); it is never published")
        f = Path(convert_dir) / r["file"]
        if not f.exists() or st.sha256_file(f) != r["sha256"]:
            raise UserError(f"{f}: differs from the file the parity gate passed (sha256 {r['sha256'][:12]}); "
                            f"re-run `doit convert model={model}`")
        entries[f"onnx/{f.name}"] = f
        artifacts.append({"format": "onnx", "precision": p, "file": f"onnx/{f.name}", "sha256": r["sha256"],
                          "size": r["size"], "parity": {k: r.get(k) for k in ("max_abs", "top1_agreement")},
                          "gate": {k: r.get(k) for k in GATE_FIGURES}})
    if report is not None:
        entries["parity.json"] = Path(convert_dir) / "report.json"
    for d in bench_dirs:
        p = Path(d) / "results.json"
        if p.exists():
            entries[f"benchmark/{Path(d).parent.name}-{Path(d).name}.json"] = p
    body = build_manifest(model, export_dir, report, collect_benchmarks(bench_dirs), eval_metrics, root,
                          build, signature, weights, artifacts, dataset_key, image_tags)
    with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
        tarball = package.pack(entries, Path(tmp) / st.tarball_name(model, version, arch))
        stored = st.publish(store, model, version, arch, tarball, body)
    progress(f"published {model} {version} ({arch}) to {store.url}: {stored['version_rule']}")
    catalog.regenerate(store)
    return stored
