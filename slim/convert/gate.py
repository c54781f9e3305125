"""The gate a converted model passes before it may be published, measured the way MLPerf
measures quantized submissions: on the labelled validation split, a converted precision
passes when its top-1 is at least 99% of the fp32 SavedModel's top-1 on the same images.

Also reported, and deciding only when there are no labels (seeded inputs, said so):
  * max abs error of `probabilities` against the SavedModel;
  * top-1 agreement with the SavedModel, counted only over the samples whose reference
    top-1 is clear (top-1 minus top-2 probability above `clear_margin`): on a near-uniform
    output the argmax flips on noise, and such ties must not decide a verdict.
fp32 must also stay within its max abs error: it is the same model, not an approximation.
"""
from __future__ import annotations

import tempfile

from slim.convert import samples as smp

TOP1_RATIO = 0.99         # MLPerf's accuracy target for quantized models: 99% of fp32
CLEAR_MARGIN = 0.01       # reference top-1 minus top-2 probability for a sample to count

# max abs error of probabilities; minimum agreement on clear samples (seeded inputs only)
TOLERANCES = {
    "fp32": {"max_abs": 1e-4, "top1_agreement": 1.0, "top1_ratio": TOP1_RATIO, "clear_margin": CLEAR_MARGIN},
    "fp16": {"max_abs": 1e-2, "top1_agreement": 0.98, "top1_ratio": TOP1_RATIO, "clear_margin": CLEAR_MARGIN},
    "int8": {"max_abs": 0.15, "top1_agreement": 0.90, "top1_ratio": TOP1_RATIO, "clear_margin": CLEAR_MARGIN},
}

SEEDED_NOTE = ("no labelled validation TFRecords: gated on top-1 agreement and max abs error "
               "against the fp32 SavedModel on seeded inputs, not on accuracy")


def probabilities(outputs: dict):
    """The outputs' probabilities (softmax of the logits when there is no such output)."""
    import numpy as np

    if "probabilities" in outputs:
        return np.asarray(outputs["probabilities"], dtype="float64")
    z = np.asarray(outputs["logits"], dtype="float64").reshape(len(outputs["logits"]), -1)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def clear_mask(reference_probs, margin: float = CLEAR_MARGIN):
    """True for each sample whose reference top-1 beats its top-2 by more than `margin`."""
    import numpy as np

    p = np.asarray(reference_probs, dtype="float64")
    if p.shape[-1] < 2:
        return np.ones(len(p), dtype=bool)
    top2 = np.sort(p, axis=-1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) > margin


def top1_accuracy(probs, labels) -> float:
    import numpy as np

    return float(np.mean(np.argmax(probs, -1) == np.asarray(labels).reshape(-1))) if len(labels) else 0.0


def measure(reference: dict, converted: dict, labels=None, clear_margin: float = CLEAR_MARGIN) -> dict:
    """Every figure the verdict may use."""
    import numpy as np

    a, b = probabilities(reference), probabilities(converted)
    if a.shape != b.shape:
        return {"shape_mismatch": f"probabilities shape {list(b.shape)} != source {list(a.shape)}"}
    finite = bool(np.all(np.isfinite(b)))
    max_abs = float(np.max(np.abs(a - b))) if a.size and finite else (0.0 if finite else float("inf"))
    clear = clear_mask(a, clear_margin)
    agree = np.argmax(a, -1) == np.argmax(b, -1)
    figures = {
        "samples": int(len(a)), "clear": int(clear.sum()), "finite": finite, "max_abs": max_abs,
        "top1_agreement": float(agree[clear].mean()) if clear.any() else None,
        "logits_max_abs": (float(np.max(np.abs(np.asarray(reference["logits"], "float64")
                                               - np.asarray(converted["logits"], "float64"))))
                           if "logits" in reference and "logits" in converted and finite else None),
    }
    figures.update(top1=None, fp32_top1=None, top1_ratio=None)
    if labels is not None:
        ref_top1, top1 = top1_accuracy(a, labels), top1_accuracy(b, labels)
        figures.update(top1=top1, fp32_top1=ref_top1, top1_ratio=(top1 / ref_top1) if ref_top1 else None)
    return figures


def judge(figures: dict, precision: str, tolerance: dict, data: str) -> dict:
    """The verdict on measured figures: {"passed", "reason", "note", **figures}."""
    if "shape_mismatch" in figures:
        return {"passed": False, "reason": figures["shape_mismatch"], "data": data, "tolerance": dict(tolerance)}
    failures = []
    if not figures["finite"]:
        failures.append("non-finite outputs")
    elif data == smp.TFRECORDS:
        want = tolerance["top1_ratio"] * figures["fp32_top1"]
        if figures["top1"] < want:
            failures.append(f"top-1 {figures['top1']:.4f} < {tolerance['top1_ratio']:.0%} of the fp32 "
                            f"SavedModel's {figures['fp32_top1']:.4f} on {figures['samples']} labelled images")
        if precision == "fp32" and figures["max_abs"] > tolerance["max_abs"]:
            failures.append(f"max abs error {figures['max_abs']:.3g} > {tolerance['max_abs']:g}")
    else:
        if figures["max_abs"] > tolerance["max_abs"]:
            failures.append(f"max abs error {figures['max_abs']:.3g} > {tolerance['max_abs']:g}")
        agreement = figures["top1_agreement"]
        if agreement is not None and agreement < tolerance["top1_agreement"]:
            failures.append(f"top-1 agreement {agreement:.3f} < {tolerance['top1_agreement']:g} "
                            f"on {figures['clear']} clear samples")
    return {"passed": not failures, "reason": "; ".join(failures) or None, "data": data,
            "note": SEEDED_NOTE if data == smp.SEEDED else None, "tolerance": dict(tolerance),
            **figures}


def tolerance_for(precision: str, overrides: dict | None = None) -> dict:
    return dict(TOLERANCES[precision], **((overrides or {}).get(precision, {})))


def run_onnx(path, images_path, description: str = "", basic_optimizations: bool = True) -> dict:
    """A converted file's outputs on a sample file, one batch at a time.  Float models run
    with basic graph optimizations only (see runners.onnx_runner: a third of the memory, the
    same arithmetic); int8 needs the full level, which fuses QDQ pairs into the int8 kernels
    it is deployed with (basic would measure fake quantization in float, 8x slower)."""
    from zoobuild.progress import progress
    from slim.convert.runners import onnx_runner, run_batched

    images = smp.load_images(images_path)
    run = onnx_runner(path, basic_optimizations=basic_optimizations)
    with progress(description or f"convert: gate {path}", total=len(images), unit="images") as bar:
        return run_batched(run, images, run.batch or 8, bar=bar)


def gate_file(export_dir, onnx_path, precision: str, *, samples: int | None = None, seed: int = 0,
         tolerance: dict | None = None, data_dir: str = "", **_) -> dict:
    """The gate for one converted file against its export; returns the verdict dict."""
    from slim.convert import reference

    with tempfile.TemporaryDirectory(prefix="zoobuild-gate-") as work:
        meta = reference.prepare(export_dir, work, data_dir=data_dir, samples=samples, seed=seed)
        outputs = run_onnx(onnx_path, meta["gate"]["images"], basic_optimizations=precision != "int8")
        figures = measure(reference.load_reference(work), outputs, reference.load_labels(meta["gate"]),
                          (tolerance or TOLERANCES[precision]).get("clear_margin", CLEAR_MARGIN))
    return judge(figures, precision, tolerance or TOLERANCES[precision], meta["gate"]["source"])
