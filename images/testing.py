"""A tiny, self-contained spec set for tests and benchmarks: no TensorFlow, builds in seconds.

    write_tiny_specs(root, n_models=12, prefix="zoobuild-tiny:")

root/specs/*.yml, root/partials/*.partial.Dockerfile, root/models/<m>/model.py: a base image
(FROM the configured Python base), a category image, and n model images each with its own
model package holding root/common/ and root/models/<m>/.
"""
from __future__ import annotations

from pathlib import Path

BASE_SPEC = """\
header: |
  tiny test images
releases:
  tiny:
    is_dockerfiles: false
    upload_images: true
    tag_specs:
      - "{{_TAG_PREFIX}}{{tiny-base}}{{tiny-category}}{{tiny-models}}"
slice_sets:
  tiny-base:
    - add_to_name: base
      partials: [tiny-base]
      args: ["_TAG_PREFIX={prefix}", "BASE_IMAGE={base_image}"]
      files: [{{source: common/hello.txt, destination: hello.txt}}]
      tests:
        - name: hello
          command: cat /hello.txt
  tiny-category:
    - add_to_name: -cat
      partials: [tiny-category]
"""
MODEL_SLICE = """\
    - add_to_name: -{m}
      dockerfile_subdirectory: models
      partials: [model_package]
      args: [MODEL_NAME={m}]
      package:
        name: {m}-fp32-training
        files:
          - {{source: common, destination: common}}
          - {{source: models/{m}, destination: model}}
      tests:
        - name: package
          command: test -f model/model.py && test "$MODEL_NAME" = {m}
"""
PARTIALS = {
    "tiny-base": "COPY hello.txt /hello.txt\nRUN echo tiny base > /base.txt\n",
    "tiny-category": "ARG CATEGORY_TEXT=tiny-category\nRUN echo ${CATEGORY_TEXT} > /category.txt\n",
}


def model_names(n: int) -> list[str]:
    return [f"m{i:02d}" for i in range(n)]


def write_tiny_specs(root, n_models: int = 3, prefix: str = "zoobuild-tiny:",
                     base_image: str = "python:3.11-slim-bookworm") -> Path:
    """Write the spec set under root; return root/specs."""
    root = Path(root)
    (root / "specs").mkdir(parents=True, exist_ok=True)
    (root / "partials").mkdir(exist_ok=True)
    (root / "common").mkdir(exist_ok=True)
    (root / "common" / "hello.txt").write_text("hello from the tiny base\n")
    (root / "common" / "util.py").write_text("SHARED = 1\n")
    text = BASE_SPEC.format(prefix=prefix, base_image=base_image)
    text += "  tiny-models:\n" + "".join(MODEL_SLICE.format(m=m) for m in model_names(n_models))
    (root / "specs" / "tiny_spec.yml").write_text(text)
    for name, body in PARTIALS.items():
        (root / "partials" / f"{name}.partial.Dockerfile").write_text(body)
    model_package = Path(__file__).parent / "partials" / "model_package.partial.Dockerfile"
    (root / "partials" / "model_package.partial.Dockerfile").write_text(model_package.read_text())
    for m in model_names(n_models):
        (root / "models" / m).mkdir(parents=True, exist_ok=True)
        (root / "models" / m / "model.py").write_text(f"NAME = {m!r}\n")
    return root / "specs"


def seed_wheelhouse(build_dir, source=None) -> Path:
    """Hard-link (or copy) the repository's wheelhouse (wheels, .debs, index.json) into
    build_dir/wheelhouse so a test's `doit wheelhouse` reuses it instead of downloading ~300 MB.
    Files already there (a compiled wheel `doit build_wheel` filed) are kept."""
    import os
    import shutil

    from zoobuild import paths

    source = Path(source) if source else paths.ROOT / "build" / "wheelhouse"
    dest = Path(build_dir) / "wheelhouse"
    dest.mkdir(parents=True, exist_ok=True)
    if not source.is_dir():
        return dest
    for f in source.iterdir():
        if f.is_file() and (f.suffix in (".whl", ".deb") or f.name == "index.json") \
                and not (dest / f.name).exists():
            try:
                os.link(f, dest / f.name)
            except OSError:
                shutil.copy2(f, dest / f.name)
    return dest


def fake_wheel(path) -> Path:
    """A valid (zip) wheel file at path, holding one module; its tags are in its file name."""
    import zipfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dist, version = path.name.split("-")[:2]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{dist}/__init__.py", "X = 1\n")
        z.writestr(f"{dist}-{version}.dist-info/METADATA",
                   f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    return path
