"""The export the post-training stages read, and the data they gate on: resolved once for
convert, benchmark and publish.

The export is `tasks.train.export_dir(model)` (what `doit export` writes), or `export_dir=`
when given; as a key input it is the export's own key when `doit export` makes it (known
before its files exist), else the content of `export_dir=`.
"""
from __future__ import annotations

from pathlib import Path

from tasks.errors import UserError
from tasks.params import Var
from zoobuild import keys, paths

EXPORT_DIR = Var("export_dir", str, "", "SavedModel export dir; empty: the one `doit export` made")


def export_dir(model: str) -> Path:
    if EXPORT_DIR.get():
        return Path(EXPORT_DIR.get()).resolve()
    train = train_module()
    if train is None or not hasattr(train, "export_dir"):
        return paths.BUILD / "export" / model / "missing"
    return Path(train.export_dir(model))


def export_digest(path: Path, model: str | None = None) -> str:
    """The export as an input: its key when `doit export` makes it (known before the files
    exist, so one run of the chain keys convert once), else the content of export_dir=."""
    train = train_module()
    if model is not None and not EXPORT_DIR.get() and train is not None and hasattr(train, "export_key"):
        return f"export:{train.export_key(model).hex}"
    return keys.tree_digest(path) if path.exists() else "missing"


def export_task_dep(model: str) -> list[str]:
    """convert and the tf benchmark run after `doit export` unless export_dir= names a SavedModel."""
    return [] if EXPORT_DIR.get() or train_module() is None else [f"export:{model}"]


def gate_task_dep(model: str) -> list[str]:
    """A bf16 model publishes behind its accuracy gate, which its `doit eval` computes."""
    train = train_module()
    if EXPORT_DIR.get() or train is None or not hasattr(train, "OPTIONS"):
        return []
    return [] if train.OPTIONS["compute"].get() == "fp32" else [f"eval:{model}"]


def require_export(path: Path, model: str) -> None:
    from slim.convert import find_saved_model

    if not path.exists():
        raise UserError(f"no export of {model} at {path}: run `doit export model={model}` first, "
                        f"or pass export_dir=")
    find_saved_model(path)


def train_module():
    try:
        from tasks import train
    except ImportError:
        return None
    return train


def default_tfrecords() -> Path | None:
    """The TFRecords the model was trained on (train's dataset_dir).  The path is decided by
    keys, not by what exists yet, so a key computed before `doit imagenet_tfrecords` runs in
    the same invocation equals the one computed after it."""
    train = train_module()
    try:
        if train is not None and hasattr(train, "dataset_dir"):
            return Path(train.dataset_dir())
        from tasks import data
        return Path(data.default_tfrecords_dir())
    except (ImportError, UserError):
        return None


def data_identity(path: str) -> str:
    """A data directory as a key input: the conversion key for the default set, else its content."""
    default = default_tfrecords()
    if default is not None and Path(path) == default:
        train = train_module()
        if train is not None and hasattr(train, "_dataset_digest"):
            return train._dataset_digest()
    return keys.tree_digest(path) if Path(path).exists() else f"missing:{path}"
