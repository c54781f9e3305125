"""Everything the gate compares against, made once per conversion in one TensorFlow process:
the gate samples (the labelled validation split, or seeded images when there is none), the
int8 calibration samples (the train split, or seeded), and the fp32 SavedModel's outputs on
the gate samples.  All of it goes to files in a work directory, so the converters and the
onnxruntime runs that follow need neither TensorFlow nor the samples in memory."""
from __future__ import annotations

from pathlib import Path

from slim.convert import samples as smp
from slim.convert.runners import run_batched, tf_runner
from slim.convert.savedmodel import checked_signature, export_info, input_hw

GATE_SAMPLES = {smp.TFRECORDS: 1000, smp.SEEDED: 32}   # images the gate runs, by data source
REFERENCE_BATCH = 8


def prepare(export_dir, work, *, data_dir: str = "", samples: int | None = None, seed: int = 0,
            calibration_samples: int = 0) -> dict:
    """Write work/gate.npy (+ gate.labels.npy), work/calibration.npy and work/reference.npz.
    Returns the signature, input size and where each sample set came from."""
    import numpy as np

    from zoobuild.progress import progress

    work = Path(work)
    sig = checked_signature(export_dir)
    info = export_info(export_dir)
    hw = input_hw(sig, info)
    prep = info.get("preprocessing") or ""
    offset = int(info.get("labels_offset") or 0)
    labelled = smp.has_split(data_dir, "validation")
    limit = samples or GATE_SAMPLES[smp.TFRECORDS if labelled else smp.SEEDED]
    gate_set = smp.write_samples(work / "gate.npy", data_dir if labelled else "", "validation", limit, hw,
                                 preprocessing=prep, labels_offset=offset, seed=seed)
    calib_set = None
    if calibration_samples:
        calib_set = smp.write_samples(work / "calibration.npy", data_dir, "train", calibration_samples, hw,
                                      preprocessing=prep, labels_offset=offset, seed=seed + 1000,
                                      labelled=False)
    images = smp.load_images(gate_set["images"])
    with progress("convert: fp32 SavedModel on the gate samples", total=len(images), unit="images") as bar:
        outputs = run_batched(tf_runner(export_dir), images, REFERENCE_BATCH, bar=bar)
    np.savez(work / "reference.npz", **outputs)
    return {"signature": sig, "input_hw": list(hw), "gate": gate_set, "calibration": calib_set,
            "data_dir": str(data_dir or "")}


def load_reference(work) -> dict:
    import numpy as np

    with np.load(Path(work) / "reference.npz") as z:
        return {k: z[k] for k in z.files}


def load_labels(gate_set: dict):
    import numpy as np

    return np.load(gate_set["labels"]) if gate_set.get("labels") else None
