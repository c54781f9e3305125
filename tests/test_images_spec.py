"""Spec format, strict validation, Dockerfile generation, init-spec (no engine)."""
import textwrap
from pathlib import Path

import pytest

from images import assemble, initspec, spec
from images.plan import load_plan, model_image_tag

ROOT = Path(__file__).resolve().parent.parent

BASE = """\
header: |
  test images
releases:
  r:
    tag_specs:
      - "{_TAG_PREFIX}{base}{models}"
slice_sets:
  base:
    - add_to_name: base
      partials: [p_base]
      args: ["_TAG_PREFIX=zt:", "BASE_IMAGE=debian:bookworm", "COLOR=red"]
      files: [{source: data/a.txt, destination: a.txt}]
  models:
    - add_to_name: -m1
      dockerfile_subdirectory: models
      partials: [p_model]
      args: [MODEL_NAME=m1, COLOR=blue]
    - add_to_name: -m2
      dockerfile_subdirectory: models
      partials: [p_model]
      args: [MODEL_NAME=m2]
"""
PARTIALS = {
    "p_base": "RUN echo base\nCOPY a.txt /a.txt\n",
    "p_model": "ARG MODEL_NAME\nARG COLOR=green\nRUN echo ${MODEL_NAME} ${COLOR}\n",
}


def make_tree(tmp_path, specs=None, partials=None):
    root = tmp_path / "repo"
    (root / "specs").mkdir(parents=True)
    (root / "partials").mkdir()
    (root / "data").mkdir()
    (root / "data" / "a.txt").write_text("a\n")
    for name, text in (specs or {"base_spec.yml": BASE}).items():
        (root / "specs" / name).write_text(textwrap.dedent(text))
    for name, text in (partials or PARTIALS).items():
        (root / "partials" / f"{name}.partial.Dockerfile").write_text(text)
    return root


def load(root, cli=None):
    return assemble.expand(spec.load(root / "specs", root / "partials", root=root), cli)


def test_shipped_specs_expand_to_the_layer_graph():
    plan = load_plan()
    tags = plan.by_tag
    base = [i for i in plan.images if i.parent is None]
    assert [b.name for b in base] == ["tf-compiled-base"]
    cat = plan.by_name["image-recognition"]
    assert cat.parent == base[0].tag
    for model in ("vgg_16", "resnet_v1_50", "inception_v3"):
        for mode in ("training", "inference"):
            tag = model_image_tag(plan, model, "fp32", mode)
            img = tags[tag]
            assert img.parent == cat.tag, "a model image is FROM its category image"
            assert img.slice.package is not None
            assert img.build_args["FROM_IMAGE"] == cat.tag
            names = [t.name for t in img.tests]
            assert "import-tf" in names, "tensorflow and tf_slim import in every image"
    assert all(any(t.name == "import-tf" for t in i.tests) for i in plan.images)


def test_committed_dockerfiles_are_in_sync():
    plan = load_plan()
    stale = assemble.out_of_date(plan.images, ROOT / "dockerfiles")
    assert stale == [], f"run `doit dockerfiles`: out of date: {stale}"


def test_cartesian_product_args_and_cli(tmp_path):
    images = load(make_tree(tmp_path))
    assert [i.tag for i in images] == ["zt:base", "zt:base-m1", "zt:base-m2"]
    m1, m2 = images[1], images[2]
    assert m1.parent == "zt:base" and m1.dockerfile_path == "models/base-m1.Dockerfile"
    assert m1.build_args == {"FROM_IMAGE": "zt:base", "MODEL_NAME": "m1", "COLOR": "blue"}
    assert m2.build_args["COLOR"] == "red", "args apply left to right along the chain"
    cli = load(make_tree(tmp_path / "b"), {"COLOR": "cli", "_TAG_PREFIX": "other:"})
    assert [i.tag for i in cli] == ["other:base", "other:base-m1", "other:base-m2"]
    assert all(i.build_args.get("COLOR", "cli") == "cli" for i in cli), "command-line args win"
    assert [i.dockerfile for i in cli] == [i.dockerfile for i in images], \
        "command-line args never change the generated (committed) Dockerfiles"
    assert images[0].dockerfile.startswith(assemble.MARKER)
    assert "ARG FROM_IMAGE=debian:bookworm\nFROM ${FROM_IMAGE}" in images[0].dockerfile


BAD = {
    "unknown field": (BASE.replace("      partials: [p_base]", "      partial: [p_base]"),
                      "base_spec.yml:10: slice_sets.base[0].partial: unknown field"),
    "unknown slice set": (BASE.replace("{models}", "{modelz}"),
                          "base_spec.yml:6: releases.r.tag_specs: {modelz} is neither a slice set nor an arg"),
    "unset arg": (BASE.replace("{_TAG_PREFIX}", "{PREFIX}"),
                  "base_spec.yml:6: releases.r.tag_specs: {PREFIX} is neither"),
    "missing partial": (BASE.replace("[p_model]\n      args: [MODEL_NAME=m2]", "[p_nope]\n      args: [MODEL_NAME=m2]"),
                        "base_spec.yml:20: slice_sets.models[1].partials: partial 'p_nope' not found"),
    "missing file": (BASE.replace("data/a.txt", "data/b.txt"),
                     "base_spec.yml:12: slice_sets.base[0].files.source: 'data/b.txt' does not exist"),
    "duplicate tag": (BASE.replace("add_to_name: -m2", "add_to_name: -m1"),
                      "base_spec.yml:6: releases.r.tag_specs: produces tag 'zt:base-m1' from a different"),
    "duplicate Dockerfile path": (
        BASE.replace("      dockerfile_subdirectory: models\n", "      dockerfile_subdirectory: models\n"
                     "      dockerfile_exclusive_name: same\n"),
        "base_spec.yml:6: releases.r.tag_specs: Dockerfile path 'models/same.Dockerfile' of zt:base-m2"),
    "unset ARG in partial": (BASE.replace("args: [MODEL_NAME=m2]", "args: [OTHER=1]"),
                             "images/partials/p_model.partial.Dockerfile:1: ARG MODEL_NAME: used by slice_sets.models[1]"),
    "yaml syntax": (BASE.replace("  r:\n", "  r: [\n"), "base_spec.yml:"),
    "bad arg": (BASE.replace("args: [MODEL_NAME=m2]", "args: [MODEL_NAME]"),
                "base_spec.yml:21: slice_sets.models[1].args: 'MODEL_NAME': expected NAME=value"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_strict_validation_names_file_line_field(tmp_path, case):
    text, expected = BAD[case]
    root = make_tree(tmp_path, {"base_spec.yml": text})
    with pytest.raises(spec.SpecError) as err:
        load(root)
    msg = str(err.value)
    assert expected in msg, msg
    assert "\n" not in msg.strip()
    if case == "yaml syntax":
        assert "YAML syntax" in msg


def test_slice_set_defined_twice_across_files(tmp_path):
    extra = "slice_sets:\n  models:\n    - add_to_name: -m9\n"
    root = make_tree(tmp_path, {"base_spec.yml": BASE, "z_spec.yml": extra})
    with pytest.raises(spec.SpecError, match=r"z_spec.yml:2: slice_sets.models: slice set defined twice "
                                             r"\(first at specs/base_spec.yml:\d+\)"):
        load(root)


def test_two_tag_specs_producing_the_same_tag(tmp_path):
    text = BASE.replace('      - "{_TAG_PREFIX}{base}{models}"',
                        '      - "{_TAG_PREFIX}{base}{models}"\n      - "{_TAG_PREFIX}{other}"') + \
        "  other:\n    - add_to_name: base-m1\n      args: [\"_TAG_PREFIX=zt:\", BASE_IMAGE=x]\n"
    with pytest.raises(spec.SpecError, match=r"base_spec.yml:7: .*produces tag 'zt:base-m1' from a different"):
        load(make_tree(tmp_path, {"base_spec.yml": text}))


def test_release_tag_specs_merge_across_files_in_name_order(tmp_path):
    extra = 'releases:\n  r:\n    tag_specs: ["{_TAG_PREFIX}{base}{more}"]\nslice_sets:\n  more:\n' \
            '    - add_to_name: -x\n      partials: [p_model]\n      args: [MODEL_NAME=x]\n'
    root = make_tree(tmp_path, {"base_spec.yml": BASE, "x_spec.yml": extra})
    assert [i.tag for i in load(root)][-1] == "zt:base-x"


def test_write_dockerfiles_removes_only_what_it_wrote(tmp_path):
    images = load(make_tree(tmp_path))
    out = tmp_path / "dockerfiles"
    (out / "models").mkdir(parents=True)
    (out / "models" / "handmade.Dockerfile").write_text("FROM scratch\n")
    (out / "models" / "old.Dockerfile").write_text(assemble.MARKER + "\nFROM scratch\n")
    res = assemble.write_dockerfiles(images, out)
    assert sorted(res["written"]) == ["base.Dockerfile", "models/base-m1.Dockerfile", "models/base-m2.Dockerfile"]
    assert res["removed"] == ["models/old.Dockerfile"]
    assert (out / "models" / "handmade.Dockerfile").exists()
    assert assemble.out_of_date(images, out) == []
    (out / "base.Dockerfile").write_text("edited by hand\n")
    assert assemble.out_of_date(images, out) == ["base.Dockerfile"]
    assert assemble.write_dockerfiles(images, out)["written"] == ["base.Dockerfile"]


def test_init_spec_scaffolds_a_valid_model(tmp_path):
    import shutil

    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", specs)
    path = initspec.init_spec("mobilenet_v1", "image-recognition", ["fp32"], ["training"],
                              spec_dir=specs, root=ROOT)
    plan = load_plan(specs)
    tag = model_image_tag(plan, "mobilenet_v1", "fp32", "training")
    img = plan.by_tag[tag]
    assert img.parent == plan.by_name["image-recognition"].tag
    assert img.slice.package.name == "mobilenet_v1-fp32-training"
    with pytest.raises(Exception, match="exists"):
        initspec.init_spec("mobilenet_v1", "image-recognition", spec_dir=specs, root=ROOT)
    with pytest.raises(Exception, match="category='nope'"):
        initspec.init_spec("other_net", "nope", spec_dir=specs, root=ROOT)
    assert not (specs / "other_net_spec.yml").exists(), "a refused scaffold leaves no file"
    assert path.exists()


def test_doit_dockerfiles_bad_spec_is_one_line_and_writes_nothing(tmp_path, build_dir):
    from conftest import run_doit

    root = make_tree(tmp_path, {"base_spec.yml": BASE.replace("partials: [p_base]", "partialz: [p_base]")})
    before = sorted(p.name for p in (ROOT / "dockerfiles").rglob("*"))
    res = run_doit(["dockerfiles", f"specs={root / 'specs'}"], check=False)
    assert res.returncode != 0
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("zoobuild:")]
    assert len(lines) == 1 and "base_spec.yml:10: slice_sets.base[0].partialz: unknown field" in lines[0], \
        res.stdout + res.stderr
    assert sorted(p.name for p in (ROOT / "dockerfiles").rglob("*")) == before


def test_downloads_are_checked_against_their_sha256(tmp_path, build_dir):
    import hashlib

    from images import build
    from images.spec import Download, Where
    from zoobuild.errors import UserError

    src = tmp_path / "blob.bin"
    src.write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    path = build.fetch_download(Download(src.as_uri(), "blob.bin", good, Where("s.yml", 3)))
    assert path.read_bytes() == b"payload"
    with pytest.raises(UserError, match=r"s.yml:4: downloads.sha256: .* has sha256 " + good):
        build.fetch_download(Download(src.as_uri(), "blob.bin", "0" * 64, Where("s.yml", 4)))
    assert not (build_dir / "downloads" / ("0" * 64)).exists(), "no partial output"


def test_another_spec_set_never_touches_the_committed_dockerfiles(tmp_path, build_dir):
    from conftest import run_doit

    root = make_tree(tmp_path)
    before = {p: p.read_text() for p in (ROOT / "dockerfiles").rglob("*.Dockerfile")}
    run_doit(["dockerfiles", f"specs={root / 'specs'}"])
    assert (root / "dockerfiles" / "models" / "base-m1.Dockerfile").exists()
    assert {p: p.read_text() for p in (ROOT / "dockerfiles").rglob("*.Dockerfile")} == before
