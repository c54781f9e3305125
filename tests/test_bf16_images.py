"""bf16 model images: the shipped specs carry them, init_spec precisions=bf16 scaffolds them."""
import shutil
from pathlib import Path

import pytest

from conftest import run_doit
from images import assemble, initspec
from images.plan import load_plan, model_image_tag
from zoobuild.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("inception_v3", "resnet_v1_50", "vgg_16")


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_models_have_bf16_images_beside_fp32(model):
    plan = load_plan()
    for mode in ("training", "inference"):
        bf16 = plan.by_tag[model_image_tag(plan, model, "bf16", mode)]
        fp32 = plan.by_tag[model_image_tag(plan, model, "fp32", mode)]
        assert bf16.tag.endswith(f"-bf16-{mode}") and bf16.tag != fp32.tag
        assert bf16.parent == fp32.parent == plan.by_name["image-recognition"].tag
        assert bf16.args["PRECISION"] == "bf16" and bf16.slice.package.name == f"{model}-bf16-{mode}"
    assert assemble.out_of_date(plan.images, ROOT / "dockerfiles") == []


def test_init_spec_bf16_extends_an_existing_spec(tmp_path):
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", specs)
    initspec.init_spec("mobilenet_v1", "image-recognition", ["fp32"], ["training", "inference"],
                       spec_dir=specs, root=ROOT)
    before = (specs / "mobilenet_v1_spec.yml").read_text()
    initspec.init_spec("mobilenet_v1", "image-recognition", ["bf16"], ["training", "inference"],
                       spec_dir=specs, root=ROOT)
    after = (specs / "mobilenet_v1_spec.yml").read_text()
    assert after.startswith(before)                # the fp32 slices are kept as they were
    plan = load_plan(specs)
    tags = {model_image_tag(plan, "mobilenet_v1", p, m) for p in ("fp32", "bf16")
            for m in ("training", "inference")}
    assert {t.rsplit("-", 2)[-2] + "-" + t.rsplit("-", 1)[-1] for t in tags} == {
        "fp32-training", "fp32-inference", "bf16-training", "bf16-inference"}
    with pytest.raises(UserError, match="exists with slice mobilenet-v1-bf16-training"):
        initspec.init_spec("mobilenet_v1", "image-recognition", ["bf16"], ["training"],
                           spec_dir=specs, root=ROOT)
    assert (specs / "mobilenet_v1_spec.yml").read_text() == after
    initspec.init_spec("mobilenet_v1", "image-recognition", ["bf16"], ["inference"],
                       spec_dir=specs, root=ROOT, force=True)     # force rewrites the whole spec
    plan = load_plan(specs)
    assert model_image_tag(plan, "mobilenet_v1", "bf16", "inference").endswith("-bf16-inference")
    with pytest.raises(UserError, match="no model image"):
        model_image_tag(plan, "mobilenet_v1", "fp32", "training")


def test_doit_init_spec_precisions_bf16(tmp_path, build_dir):
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", specs)
    initspec.init_spec("mobilenet_v1", "image-recognition", ["fp32"], ["training"], spec_dir=specs, root=ROOT)
    res = run_doit(["init_spec", "new_model=mobilenet_v1", "precisions=bf16", "modes=training",
                    f"specs={specs}"], env={"ZOOBUILD_BUILD_DIR": str(build_dir)}, timeout=300)
    assert "wrote" in res.stdout
    text = (specs / "mobilenet_v1_spec.yml").read_text()
    assert "dockerfile_exclusive_name: mobilenet-v1-bf16-training" in text
    assert "args: [MODEL_NAME=mobilenet_v1, PRECISION=bf16, MODE=training]" in text
