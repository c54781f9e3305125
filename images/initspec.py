"""Scaffold the spec of a new model: specs/<model>_spec.yml, valid and buildable as written.

    doit init_spec new_model=mobilenet_v1 category=image-recognition precisions=fp32 modes=training,inference
    doit init_spec new_model=vgg_16 precisions=bf16      # an existing spec gains the bf16 slices
"""
from __future__ import annotations

import re
from pathlib import Path

from zoobuild import atomic
from zoobuild.errors import UserError

# a model package ships the libraries its stages run and the foundation they stand on (whole
# folders: no hand-kept file lists); tasks/ (the doit wiring) never travels.
PACKAGE_FILES = (("slim", "slim"), ("datasets", "datasets"), ("zoobuild", "zoobuild"),
                 ("images/quickstart", "quickstart"))
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def dashed(name: str) -> str:
    return name.replace("_", "-")


def _files(root) -> list[tuple[str, str]]:
    root = Path(root) if root else Path(__file__).resolve().parent.parent
    return [(s, d) for s, d in PACKAGE_FILES if (root / s).exists()]


def variant(name: str, precision: str, mode: str) -> str:
    return f"{dashed(name)}-{precision}-{mode}"


def slice_lines(name: str, category: str, precision: str, mode: str, files) -> list[str]:
    """One model slice (a list item of the model's slice set): its package, args and tests."""
    v = variant(name, precision, mode)
    lines = [
        f"    - add_to_name: -{v}",
        f"      dockerfile_exclusive_name: {v}",
        f"      dockerfile_subdirectory: {category}",
        "      partials: [model_package]",
        f"      args: [MODEL_NAME={name}, PRECISION={precision}, MODE={mode}]",
        "      package:",
        f"        name: {name}-{precision}-{mode}",
        "        files:",
        *[f"          - {{source: {s}, destination: {d}}}" for s, d in files],
        "      tests:",
        f"        - name: package-{precision}-{mode}",
        '          command: python -c "import json; m = json.load(open(\'model.json\')); '
        f"assert m['model_name'] == '{name}', m\"",
    ]
    if mode == "training":   # selftest_train.sh trains with compute=$PRECISION (fp32 or bf16)
        lines += [
            "        - name: train-two-steps",
            "          as_caller: true",
            "          mount: /output",
            "          command: quickstart/selftest_train.sh",
        ]
    return lines


def render(name: str, category: str, precisions=("fp32",), modes=("training", "inference"),
           root=None, release: str = "models") -> str:
    """YAML text of the spec; package files list only the sources present under root."""
    if not _NAME_RE.match(name):
        raise UserError(f"name={name!r}: expected a lowercase model name like vgg_16")
    files = _files(root)
    lines = [
        f"# {name}: model images on the {category} category (scaffolded by `doit init_spec`).",
        "releases:",
        f"  {release}:",
        "    tag_specs:",
        f'      - "{{_TAG_PREFIX}}{{tf-compiled-base}}{{{category}}}{{{dashed(name)}}}"',
        "",
        "slice_sets:",
        f"  {dashed(name)}:",
    ]
    for precision in precisions:
        for mode in modes:
            lines += slice_lines(name, category, precision, mode, files)
    return "\n".join(lines) + "\n"


def _existing_variants(text: str, name: str) -> list[str]:
    import yaml

    body = yaml.safe_load(text) or {}
    items = (body.get("slice_sets") or {}).get(dashed(name)) or []
    return [i.get("dockerfile_exclusive_name") for i in items if isinstance(i, dict)]


def extend(text: str, name: str, category: str, precisions, modes, root=None) -> str:
    """The existing spec text with slices for new (precision, mode) pairs appended to the
    model's slice set, which a scaffolded spec ends with (checked by parsing the result)."""
    have = _existing_variants(text, name)
    todo = [(p, m) for p in precisions for m in modes]
    clash = [variant(name, p, m) for p, m in todo if variant(name, p, m) in have]
    if clash:
        raise UserError(f"{name}: its spec exists with slice {clash[0]}; pass force=true to overwrite")
    files = _files(root)
    lines = [line for p, m in todo for line in slice_lines(name, category, p, m, files)]
    out = text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    missing = [variant(name, p, m) for p, m in todo if variant(name, p, m) not in _existing_variants(out, name)]
    if missing:
        raise UserError(f"{name}: its spec does not end with its slice set {dashed(name)}, so "
                        f"{', '.join(missing)} cannot be appended; pass force=true to rewrite it")
    return out


def init_spec(name: str, category: str, precisions=("fp32",), modes=("training", "inference"),
              spec_dir="specs", root=None, force=False) -> Path:
    """Write <spec_dir>/<name>_spec.yml and check that the whole spec set still validates."""
    from images import assemble, spec

    spec_dir = Path(spec_dir)
    path = spec_dir / f"{name}_spec.yml"
    old = path.read_text() if path.exists() else None
    if old is not None and not force:   # add the precisions/modes it lacks (precisions=bf16)
        text = extend(old, name, category, precisions, modes, root=root)
    else:
        text = render(name, category, precisions, modes, root=root)
    atomic.write_text(path, text)
    try:
        loaded = spec.load(spec_dir, root=root)
        if category not in loaded.slice_sets:
            raise UserError(f"category={category!r}: no such slice set in {spec_dir} "
                            f"(known: {', '.join(sorted(loaded.slice_sets))})")
        assemble.expand(loaded)
    except BaseException:
        if old is None:
            path.unlink()
        else:
            path.write_text(old)
        raise
    return path
