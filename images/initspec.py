"""Scaffold the spec of a new model: specs/<model>_spec.yml, valid and buildable as written.

    doit init_spec name=mobilenet_v1 category=image-recognition precision=fp32 mode=training,inference
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


def render(name: str, category: str, precisions=("fp32",), modes=("training", "inference"),
           root=None, release: str = "models") -> str:
    """YAML text of the spec; package files list only the sources present under root."""
    if not _NAME_RE.match(name):
        raise UserError(f"name={name!r}: expected a lowercase model name like vgg_16")
    root = Path(root) if root else Path(__file__).resolve().parent.parent
    files = [(s, d) for s, d in PACKAGE_FILES if (root / s).exists()]
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
            variant = f"{dashed(name)}-{precision}-{mode}"
            lines += [
                f"    - add_to_name: -{variant}",
                f"      dockerfile_exclusive_name: {variant}",
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
            if mode == "training":
                lines += [
                    "        - name: train-two-steps",
                    "          as_caller: true",
                    "          mount: /output",
                    "          command: quickstart/selftest_train.sh",
                ]
    return "\n".join(lines) + "\n"


def init_spec(name: str, category: str, precisions=("fp32",), modes=("training", "inference"),
              spec_dir="specs", root=None, force=False) -> Path:
    """Write <spec_dir>/<name>_spec.yml and check that the whole spec set still validates."""
    from images import assemble, spec

    spec_dir = Path(spec_dir)
    path = spec_dir / f"{name}_spec.yml"
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass force=true to overwrite")
    text = render(name, category, precisions, modes, root=root)
    old = path.read_text() if path.exists() else None
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
