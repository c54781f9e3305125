"""convert(): the SavedModel -> ONNX stage end to end.

    report = convert(export_dir, out_dir, precisions=("fp32", "fp16", "int8"), batch_size=1,
                     data_dir="build/tfrecords/...")

1. reference: in one TensorFlow process, the gate samples, the calibration samples and the
   fp32 SavedModel's outputs go to files in a work directory (`slim.convert.reference`);
2. per precision, fp32 first (fp16 and int8 start from it): convert; run the file on the
   gate samples;
3. judge each (`slim.convert.gate`); a file that fails moves to `rejected/`; report.json.

Each step of a large model runs in a process of its own (spawned, one after the other), so
what one step allocated is gone before the next starts: the peak is that of the largest
step, not their sum.  Small models run in this process (isolate="auto").
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from zoobuild import atomic
from zoobuild.digest import sha256_file
from zoobuild.errors import UserError
from slim.convert import calibration, converters, gate, reference
from slim.convert.savedmodel import find_saved_model, versions

ISOLATE_ABOVE_BYTES = 64 << 20     # weights at least this large: one process per step


def _weights_bytes(export_dir) -> int:
    sm = find_saved_model(export_dir)
    return sum(p.stat().st_size for p in sm.rglob("*") if p.is_file())


def _call(isolate: bool, fn, *args, **kwargs):
    """fn(*args, **kwargs), in a fresh spawned process when isolate."""
    if not isolate:
        return fn(*args, **kwargs)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def convert_one(precision: str, export_dir, path, settings: dict) -> None:
    """Convert one precision into `path` (a step of its own: see the module doc)."""
    converters.CONVERTERS[precision](export_dir, Path(path), **settings)


def _rejected_later(todo, results, why: str) -> None:
    for later in todo[1:]:
        results[later] = {"precision": later, "format": "onnx", "requested": True, "passed": False, "reason": why}


def convert(export_dir, out_dir, *, precisions=converters.PRECISIONS, batch_size: int = 1, opset: int = 17,
            nchw: bool = False, keep_io_types: bool = True, data_dir: str = "", samples: int | None = None,
            seed: int = 0, tolerances: dict | None = None, isolate="auto", progress=print) -> dict:
    """Convert and gate; writes ONNX files, rejected/ and report.json into out_dir; returns the report."""
    bad = [p for p in precisions if p not in converters.CONVERTERS]
    if bad:
        raise UserError(f"precision {bad[0]!r}: expected one of {', '.join(converters.PRECISIONS)}")
    if batch_size < 0:
        raise UserError(f"batch_size={batch_size}: expected >= 1, or 0 for a dynamic batch")
    if samples is not None and samples < 1:
        raise UserError(f"samples={samples}: expected >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isolate == "auto":
        isolate = _weights_bytes(export_dir) >= ISOLATE_ABOVE_BYTES
    todo = list(dict.fromkeys(["fp32", *precisions]))     # fp16 and int8 start from fp32
    calib_n = calibration.CALIBRATION_SAMPLES if "int8" in todo else 0
    calib_n = calibration.calibration_batches_count(batch_size, calib_n) * (batch_size or 1) if calib_n else 0
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=out_dir))
    try:
        meta = _call(isolate, reference.prepare, export_dir, work, data_dir=data_dir, samples=samples,
                     seed=seed, calibration_samples=calib_n)
        data = meta["gate"]["source"]
        if data == "seeded":
            progress(f"convert: {gate.SEEDED_NOTE} ({data_dir or 'no data_dir given'})")
        ref_outputs, labels = reference.load_reference(work), reference.load_labels(meta["gate"])
        settings = {"batch_size": batch_size, "opset": opset, "nchw": nchw, "hw": tuple(meta["input_hw"]),
                    "fp32_path": out_dir / "model.fp32.onnx", "keep_io_types": keep_io_types,
                    "calibration_file": (meta["calibration"] or {}).get("images")}
        results = {}
        for p in todo:
            path = out_dir / f"model.{p}.onnx"
            progress(f"convert: {p} -> {path.name}")
            _call(isolate, convert_one, p, export_dir, path, settings)
            outputs = _call(isolate, gate.run_onnx, path, meta["gate"]["images"], f"convert: {p} on the gate samples",
                            p != "int8")
            tol = gate.tolerance_for(p, tolerances)
            verdict = gate.judge(gate.measure(ref_outputs, outputs, labels, tol["clear_margin"]), p, tol, data)
            results[p] = _file_entry(out_dir, path, p, p in precisions, verdict, progress)
            if p == "fp32" and not verdict["passed"]:
                _rejected_later(todo, results, "fp32 conversion failed the gate")
                break
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "model": _model_name(export_dir), "export_dir": str(export_dir), "signature": meta["signature"],
        "input_hw": meta["input_hw"], "batch_size": batch_size, "opset": opset, "nchw": nchw,
        "keep_io_types": keep_io_types, "seed": seed,
        "gate": {"data": data, "split": "validation" if data == "tfrecords" else None,
                 "samples": meta["gate"]["count"], "data_dir": meta["data_dir"],
                 "rule": f"top-1 >= {gate.TOP1_RATIO:.0%} of the fp32 SavedModel's" if data == "tfrecords"
                 else "top-1 agreement on clear samples and max abs error (no labels)",
                 "clear_margin": gate.CLEAR_MARGIN, "note": gate.SEEDED_NOTE if data == "seeded" else None},
        "calibration": ({"source": meta["calibration"]["source"], "samples": meta["calibration"]["count"],
                         "method": calibration.METHOD} if meta["calibration"] else None),
        "converters": versions(),
        "results": {p: results[p] for p in todo if p in precisions or p in results},
        "passed": sorted(p for p in precisions if results.get(p, {}).get("passed")),
        "rejected": sorted(p for p in precisions if not results.get(p, {}).get("passed")),
    }
    atomic.write_json(out_dir / "report.json", report)
    return report


def _model_name(export_dir):
    from slim.convert.savedmodel import export_info

    return export_info(export_dir).get("model")


def _file_entry(out_dir: Path, path: Path, precision: str, requested: bool, verdict: dict, progress) -> dict:
    """The report's entry for one converted file; a rejected file moves to rejected/."""
    entry = {"precision": precision, "format": "onnx", "requested": requested, **verdict}
    if not verdict["passed"]:
        rejected = out_dir / "rejected"
        rejected.mkdir(exist_ok=True)
        shutil.move(path, rejected / path.name)
        entry.update(file=f"rejected/{path.name}", size=(rejected / path.name).stat().st_size)
        progress(f"convert: {precision} REJECTED by the gate: {verdict['reason']}")
        return entry
    entry.update(file=path.name, sha256=sha256_file(path), size=path.stat().st_size)
    figures = [f"max abs {verdict['max_abs']:.2g}", f"{verdict['clear']}/{verdict['samples']} clear"]
    if verdict.get("top1") is not None:
        figures.insert(0, f"top-1 {verdict['top1']:.4f} vs fp32 {verdict['fp32_top1']:.4f}")
    if verdict.get("top1_agreement") is not None:
        figures.append(f"top-1 agreement {verdict['top1_agreement']:.3f}")
    progress(f"convert: {precision} passed ({verdict['data']}: {', '.join(figures)})")
    return entry
