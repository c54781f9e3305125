"""The source model: where the SavedModel of an export lies, its serving signature, its
input size, and a digest of its weights.  Nothing here converts anything."""
from __future__ import annotations

import json
from pathlib import Path

from zoobuild.errors import UserError


def find_saved_model(export_dir) -> Path:
    """The SavedModel directory inside an export dir (the dir itself or one level down)."""
    export_dir = Path(export_dir)
    if (export_dir / "saved_model.pb").exists():
        return export_dir
    hits = sorted(p.parent for p in export_dir.glob("*/saved_model.pb"))
    if not hits:
        raise UserError(f"{export_dir}: no saved_model.pb (expected an export dir from `doit export`)")
    return hits[0]


def export_info(export_dir) -> dict:
    """export.json beside (or above) the SavedModel, or {}."""
    for p in (Path(export_dir) / "export.json", Path(export_dir).parent / "export.json"):
        if p.exists():
            return json.loads(p.read_text())
    return {}


def _spec(t) -> dict:
    return {"dtype": t.dtype.name, "shape": [None if d is None else int(d) for d in t.shape.as_list()]}


def load_serving(sm_dir):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(sm_dir))
    if "serving_default" not in loaded.signatures:
        raise UserError(f"{sm_dir}: no serving_default signature")
    return loaded, loaded.signatures["serving_default"]


def signature_of(fn) -> dict:
    """Input/output names, dtypes and shapes of a serving function (what X-bumps compare)."""
    _, kwargs = fn.structured_input_signature
    return {"inputs": {k: _spec(v) for k, v in sorted(kwargs.items())},
            "outputs": {k: _spec(v) for k, v in sorted(fn.structured_outputs.items())}}


def saved_model_signature(export_dir) -> dict:
    _, fn = load_serving(find_saved_model(export_dir))
    return signature_of(fn)


def checked_signature(export_dir) -> dict:
    """The serving signature, refused in one line unless it takes `images`."""
    sm = find_saved_model(export_dir)
    sig = saved_model_signature(export_dir)
    if "images" not in sig["inputs"]:
        raise UserError(f"{sm}: serving signature has inputs {list(sig['inputs'])}; expected 'images'")
    return sig


def weights_digest(export_dir) -> str:
    from zoobuild.keys import tree_digest

    sm = find_saved_model(export_dir)
    return tree_digest(sm / "variables") if (sm / "variables").exists() else tree_digest(sm)


def input_hw(sig: dict, info: dict) -> tuple[int, int]:
    shape = sig["inputs"]["images"]["shape"]
    if shape[1] and shape[2]:
        return int(shape[1]), int(shape[2])
    given = info.get("input_shape") or info.get("image_size")
    if isinstance(given, int):
        return given, given
    if given:
        dims = [int(d) for d in given if d]
        return (dims[-3], dims[-2]) if len(dims) >= 3 else (dims[0], dims[1])
    raise UserError("input 'images' has no fixed height/width and export.json gives no input_shape")


def versions() -> dict:
    """Converter versions, for manifests."""
    import importlib.metadata as md

    out = {}
    for dist in ("tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime", "onnxconverter-common"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out
