"""Model packages: reproducible, one top-level directory, no escapes; the wheelhouse hook."""
import gzip
import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from images import package, wheelhouse
from zoobuild.errors import UserError


def tree(tmp_path):
    root = tmp_path / "src"
    (root / "slim" / "nets").mkdir(parents=True)
    (root / "slim" / "__pycache__").mkdir()
    (root / "slim" / "__init__.py").write_text("")
    (root / "slim" / "nets" / "vgg.py").write_text("VGG = 16\n")
    (root / "slim" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o755)
    return root


FILES = [("slim", "slim"), ("run.sh", "quickstart/run.sh")]


def test_two_builds_are_byte_identical_and_well_formed(tmp_path, build_dir):
    root = tree(tmp_path)
    a = package.build("vgg_16-fp32-training", FILES, root, tmp_path / "a" / "p.tar.gz",
                      {"model.json": b"{}\n"})
    os.utime(root / "slim" / "nets" / "vgg.py", (1, 1))  # mtimes must not matter
    b = package.build("vgg_16-fp32-training", FILES, root, tmp_path / "b" / "p.tar.gz",
                      {"model.json": b"{}\n"})
    assert a["sha256"] == b["sha256"] and a["content_key"] == b["content_key"]
    raw = Path(a["path"]).read_bytes()
    assert raw[4:8] == b"\0\0\0\0", "gzip header mtime is 0"
    with tarfile.open(a["path"]) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "vgg_16-fp32-training"
    assert all(n == names[0] or n.startswith(names[0] + "/") for n in names), "one top-level directory"
    assert names[1:] == sorted(names[1:])
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", package.FIXED_MTIME)}
    modes = {m.name: m.mode for m in members}
    assert modes["vgg_16-fp32-training/quickstart/run.sh"] == 0o755
    assert modes["vgg_16-fp32-training/slim/nets/vgg.py"] == 0o644
    assert "vgg_16-fp32-training/model.json" in modes


def test_content_key_follows_content(tmp_path, build_dir):
    root = tree(tmp_path)
    k1 = package.content_digest(package.collect(FILES, root))
    (root / "slim" / "nets" / "vgg.py").write_text("VGG = 19\n")
    k2 = package.content_digest(package.collect(FILES, root))
    assert k1 != k2


@pytest.mark.parametrize("dest", ["../evil", "/abs/path", "a/../../b", "."])
def test_escaping_entries_are_refused(tmp_path, dest, build_dir):
    root = tree(tmp_path)
    with pytest.raises(UserError, match="escape"):
        package.collect([("run.sh", dest)], root)


def test_symlinks_are_refused(tmp_path, build_dir):
    root = tree(tmp_path)
    (root / "slim" / "link.py").symlink_to("/etc/passwd")
    with pytest.raises(UserError, match="symlink"):
        package.collect(FILES, root)


def test_wheelhouse_closure_and_requirements():
    lock = wheelhouse.parse_lock()
    version, hashes = lock["tensorflow-cpu"]
    assert version and all(len(h) == 64 for h in hashes)
    base = wheelhouse.closure(["tensorflow-cpu"])
    assert "numpy" in base and "protobuf" in base and "tensorflow-cpu" in base
    cat = wheelhouse.closure(["tf-keras", "numpy"], exclude=["tensorflow-cpu"])
    assert "tf-keras" in cat and "numpy" not in cat, "a child installs only what its parents lack"
    assert "tensorflow" not in cat, "the overridden full tensorflow wheel never enters"
    index = {"wheels": {"tf-keras": {"file": "tf_keras-2.21.0-py3-none-any.whl", "version": "2.21.0",
                                     "sha256": "a" * 64},
                        "zoobuild-native": {"file": "zn-0.1+avx2.whl", "version": "0.1+avx2",
                                            "sha256": "b" * 64, "compiled": True}}}
    text = wheelhouse.requirements_text(["tf-keras", "zoobuild-native"], index)
    assert text == (f"tf-keras==2.21.0 --hash=sha256:{'a' * 64}\n"
                    f"/wheelhouse/zn-0.1+avx2.whl --hash=sha256:{'b' * 64}\n")
    with pytest.raises(UserError, match="not pinned"):
        wheelhouse.closure(["surely-not-a-pinned-package"])


def test_compiled_wheel_hook(build_dir):
    """build/wheels/selected.json (issue 6) adds its wheel to the image that installs TensorFlow."""
    from images import plan as plan_mod

    assert wheelhouse.compiled_extras() == []
    whl = build_dir / "wheels" / "zoobuild_native-0.1.0+avx2-cp311-cp311-linux_x86_64.whl"
    whl.parent.mkdir(parents=True)
    whl.write_bytes(b"not really a wheel")
    sel = {"wheel": str(whl), "dist": "zoobuild-native", "replaces": None}
    (build_dir / "wheels" / "selected.json").write_text(json.dumps(sel))
    assert wheelhouse.compiled_extras() == ["zoobuild-native"]
    plan = plan_mod.load_plan()
    base, cat = plan.by_name["tf-compiled-base"], plan.by_name["image-recognition"]
    assert "zoobuild-native" in plan_mod.image_requirements(plan, base)
    assert "zoobuild-native" not in plan_mod.image_requirements(plan, cat)
    sel["replaces"] = "tensorflow-cpu"
    (build_dir / "wheels" / "selected.json").write_text(json.dumps(sel))
    assert wheelhouse.compiled_extras() == []
    assert wheelhouse.selected()["replaces"] == "tensorflow-cpu"


def test_model_images_install_what_the_packaged_code_imports():
    """Every third-party module slim/, datasets/ and zoobuild/ import at top level is installed in the
    model images (the closure of tf-compiled-base's and image-recognition's requirements)."""
    import re
    import sys
    from importlib import metadata

    from images import plan as plan_mod

    plan = plan_mod.load_plan()
    img = plan.by_tag[plan_mod.model_image_tag(plan, "vgg_16")]
    installed = set()
    for a in [img] + plan.ancestors(img):
        installed |= set(plan_mod.image_requirements(plan, a))
    dists = metadata.packages_distributions()
    root = Path(__file__).resolve().parent.parent
    missing = {}
    for src in ("slim", "datasets", "zoobuild"):
        for py in (root / src).rglob("*.py"):
            for mod in re.findall(r"^(?:import|from) ([A-Za-z_][A-Za-z0-9_]*)", py.read_text(), re.M):
                if mod in sys.stdlib_module_names or mod in ("slim", "datasets", "zoobuild", "images", "__future__"):
                    continue
                names = {wheelhouse.norm(d) for d in dists.get(mod, [mod])}
                if not names & installed:
                    missing.setdefault(mod, []).append(py.relative_to(root).as_posix())
    assert missing == {}, f"add to the image specs' requirements: {missing}"
