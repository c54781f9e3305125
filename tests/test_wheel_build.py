"""build_wheel on the real engine: `doit build_wheel` end to end, the run cache, the flags in the
machine code, the wheel installed and run in tf-compiled-base, ABI and ISA refusals."""
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import run_doit

pytestmark = [pytest.mark.engine]

TEST_PREFIX = "zoobuild-wheeltest:"          # never the shipped zoobuild:* tags
TF_COMPILED_BASE = f"{TEST_PREFIX}tf-compiled-base"
RUNTIME_BASE = "python:3.11-slim-bookworm"   # what tf-compiled-base is built FROM


@pytest.fixture(scope="module")
def bdir(tmp_path_factory, docker_client):
    return tmp_path_factory.mktemp("wheelbuild") / "build"


def doit(bdir, *args):
    res = run_doit(["build_wheel", *args], env={"ZOOBUILD_BUILD_DIR": str(bdir)}, timeout=900)
    return res.stdout + res.stderr


def selected(bdir) -> dict:
    return json.loads((bdir / "wheels" / "selected.json").read_text())


@pytest.fixture(scope="module")
def wheels(bdir):
    """doit build_wheel (haswell, the default), again, then target=x86-64, then haswell again."""
    first = doit(bdir)
    sel_avx2 = selected(bdir)
    second = doit(bdir)
    baseline = doit(bdir, "target=x86-64")
    sel_base = selected(bdir)
    back = doit(bdir, "target=haswell")
    return {"first": first, "second": second, "baseline": baseline, "back": back,
            "avx2": sel_avx2, "base": sel_base, "final": selected(bdir)}


def test_doit_build_wheel_builds_then_builds_nothing(wheels, bdir):
    assert "building zoobuild-native for target haswell" in wheels["first"]
    sel = wheels["avx2"]
    assert Path(sel["wheel"]).name == "zoobuild_native-0.1.0+avx2-cp311-cp311-linux_x86_64.whl"
    assert Path(sel["wheel"]).is_file() and Path(sel["wheel"]).is_relative_to(bdir / "wheels" / "zoobuild-native")
    assert (bdir / "wheelhouse" / Path(sel["wheel"]).name).is_file()
    assert sel["target"] == "haswell" and sel["tags"] == ["cp311-cp311-linux_x86_64"]
    assert sel["dist"] == "zoobuild-native" and sel["replaces"] is None
    # second run: doit finds it up to date; no container ran
    assert "-- build_wheel:zoobuild-native-haswell" in wheels["second"]
    assert "building" not in wheels["second"]
    # another target builds; going back finds the finished run (run cache), no container
    assert "building zoobuild-native for target x86-64" in wheels["baseline"]
    assert wheels["base"]["label"] == "baseline"
    assert "building" not in wheels["back"] and "cached zoobuild_native-0.1.0+avx2" in wheels["back"]
    assert wheels["final"]["key"] == sel["key"]


def _disassembly(wheel: str, tmp_path: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        so = [n for n in z.namelist() if n.endswith(".so")]
        assert len(so) == 1, so
        z.extract(so[0], tmp_path)
    return subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(tmp_path / so[0])],
                          check=True, capture_output=True, text=True).stdout


def _mnemonics(asm: str) -> list[str]:
    out = []
    for line in asm.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and re.match(r"\s*[0-9a-f]+:$", parts[0]):
            out.append(parts[1].split()[0] if parts[1].split() else "")
    return out


def test_target_flags_reach_the_machine_code(wheels, tmp_path):
    avx2 = _disassembly(wheels["avx2"]["wheel"], tmp_path / "avx2")
    base = _disassembly(wheels["base"]["wheel"], tmp_path / "base")
    avx2_ops, base_ops = _mnemonics(avx2), _mnemonics(base)
    assert any(op.startswith("vfmadd") for op in avx2_ops), "haswell build has no FMA instruction"
    assert "%ymm" in avx2, "haswell build uses no 256-bit AVX register"
    assert base_ops, "baseline disassembly is empty"
    assert not any(op.startswith("vfmadd") for op in base_ops)
    assert "%ymm" not in base and "%zmm" not in base
    # no VEX-encoded (AVX) instruction at all; SSE2 packed math instead
    assert not [op for op in base_ops if re.fullmatch(r"v[a-z0-9]+", op) and op not in ("verr", "verw")]
    assert any(op in ("mulps", "addps") for op in base_ops)


@pytest.fixture(scope="module")
def compiled_base(wheels, bdir, docker_client):
    """tf-compiled-base built by `doit images` in this module's build directory, under a test tag,
    with the compiled wheel installed by the image build itself.  On the way, `doit -n 2 wheelhouse
    target=x86-64` shows the ordering: build_wheel (cached) selects +baseline before the wheelhouse
    reads the selection."""
    from images import testing

    env = {"ZOOBUILD_BUILD_DIR": str(bdir)}
    testing.seed_wheelhouse(bdir)
    run_doit(["-n", "2", "wheelhouse", "target=x86-64"], env=env, timeout=900)
    house = json.loads((bdir / "wheelhouse" / "index.json").read_text())["wheels"]
    res = run_doit(["-n", "2", "images:tf-compiled-base", "target=haswell",
                    f"image_args=_TAG_PREFIX={TEST_PREFIX}"], env=env, timeout=900)
    return {"house_baseline": house, "out": res.stdout + res.stderr, "image": TF_COMPILED_BASE}


def _tf_compiled_base(compiled_base) -> str:
    return compiled_base["image"]


def test_wheelhouse_sees_the_wheel_build_wheel_selected_in_the_same_run(compiled_base, wheels):
    entry = compiled_base["house_baseline"]["zoobuild-native"]
    assert entry["compiled"] and entry["file"] == Path(wheels["base"]["wheel"]).name, entry


RUN_KERNELS = (
    "import array, zoobuild_native as z; "
    "x = array.array('f', [i % 7 - 3 for i in range(1000)]); y = array.array('f', [i % 5 for i in range(1000)]); "
    "d = z.dot(x, y, 3); assert d == sum(a * b for a, b in zip(x, y)), d; "
    "z.saxpy(2.0, x, y); assert y[10] == 2 * x[10] + 10 % 5; "
    "print('OK', z.build_info()['target'], d)"
)


def test_wheel_installs_and_runs_in_tf_compiled_base(wheels, compiled_base, docker_client):
    """tf-compiled-base, built by `doit images` with the haswell wheel selected, has it installed
    next to the pinned tensorflow-cpu, and its code runs there."""
    from images import abi

    image = _tf_compiled_base(compiled_base)
    wheel = Path(wheels["avx2"]["wheel"])
    # built now, or up to date: the same wheel bytes (reproducible build) keep its key
    assert f"building {image}" in compiled_base["out"] or "-- images:tf-compiled-base" in compiled_base["out"]
    accepted = abi.preflight(docker_client, wheel, RUNTIME_BASE)   # ISA on this host + ABI of its FROM
    assert accepted.python == "3.11"
    script = ("/opt/venv/bin/pip list --disable-pip-version-check 2>/dev/null | grep -iE '^(zoobuild.native|tensorflow.cpu) ' && "
              f"/opt/venv/bin/python -c \"{RUN_KERNELS}\" && "
              "ZOOBUILD_CPU_FLAGS='sse sse2' /opt/venv/bin/python -c 'import zoobuild_native' 2>&1 | tail -n 1")
    out = docker_client.containers.run(image, ["sh", "-c", script], entrypoint=[], network_mode="none",
                                       remove=True)
    lines = out.decode().strip().splitlines()
    assert any(re.match(r"zoobuild[-_]native\s+0\.1\.0\+avx2$", line) for line in lines), lines
    assert any(re.match(r"tensorflow[-_]cpu\s+\d", line) for line in lines), lines
    assert any(line.startswith("OK haswell") for line in lines), lines
    # on a CPU without AVX2 the import refuses in one line instead of SIGILL
    assert lines[-1].startswith("ImportError: zoobuild_native built for target haswell needs CPU features")
    assert "avx2" in lines[-1] and "fma" in lines[-1]


def test_abi_mismatch_against_the_real_image_is_one_line(wheels, compiled_base, docker_client, tmp_path):
    from images import abi
    from zoobuild.errors import UserError

    image = _tf_compiled_base(compiled_base)
    old = tmp_path / "zoobuild_native-0.1.0+avx2-cp35-cp35m-linux_x86_64.whl"
    shutil.copy2(wheels["avx2"]["wheel"], old)
    with pytest.raises(UserError) as err:
        abi.check_wheel_for_image(docker_client, old, image)
    assert "\n" not in str(err.value)
    assert "cp35-cp35m-linux_x86_64" in str(err.value) and "Python 3.11" in str(err.value)


def test_failed_build_is_one_line_and_leaves_no_output(wheels, bdir, tmp_path, monkeypatch):
    import yaml

    from images import wheelbuild
    from zoobuild import keys, paths
    from zoobuild.errors import UserError

    monkeypatch.setattr(paths, "BUILD", bdir)
    monkeypatch.setattr(keys, "_CACHE", None)
    data = yaml.safe_load((wheelbuild.RECIPE_DIR / "zoobuild-native.yml").read_text())
    data.update(name="broken", build="echo compiling; exit 3\n")
    data["source"]["path"] = str(wheelbuild.paths.ROOT / "native")
    recipe = tmp_path / "broken.yml"
    recipe.write_text(yaml.safe_dump(data))
    plan = wheelbuild.plan(recipe, "x86-64")
    with pytest.raises(UserError) as err:
        wheelbuild.build(plan, log=lambda *a: None)
    line = str(err.value)
    assert "\n" not in line and "exited 3" in line and "compiling" in line
    assert not plan.outdir.exists()
    assert selected(bdir)["key"] == wheels["final"]["key"]   # the selection is untouched


def test_small_change_rebuilds_but_reuses_the_compiler_cache(wheels, bdir, tmp_path, monkeypatch):
    import yaml

    from images import wheelbuild
    from zoobuild import keys, paths

    monkeypatch.setattr(paths, "BUILD", bdir)
    monkeypatch.setattr(keys, "_CACHE", None)
    src = tmp_path / "src"
    shutil.copytree(wheelbuild.paths.ROOT / "native", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so", "zoobuild_isa.json"))
    data = yaml.safe_load((wheelbuild.RECIPE_DIR / "zoobuild-native.yml").read_text())
    data["name"] = "cachetest"
    data["source"]["path"] = str(src)
    recipe = tmp_path / "cachetest.yml"
    recipe.write_text(yaml.safe_dump(data))

    def build_log():
        plan = wheelbuild.plan(recipe, "x86-64")
        wheelbuild.build(plan, log=lambda *a: None, select_it=False)
        stats = dict(line.split()[1:3] for line in (plan.outdir / "build.log").read_text().splitlines()
                     if line.startswith("ccache "))
        return plan, {k: int(v) for k, v in stats.items()}

    first, cold = build_log()
    assert cold["cache_miss"] == 1
    init = src / "zoobuild_native" / "__init__.py"
    init.write_text(init.read_text() + "\n# a small change\n")
    second, warm = build_log()
    assert second.key.hex != first.key.hex and second.outdir.is_dir()   # a new build ran ...
    assert warm["cache_miss"] == 0 and warm["direct_cache_hit"] + warm["preprocessed_cache_hit"] == 1  # ... compiling nothing


def test_check_selected_refuses_a_wheel_this_cpu_cannot_run(wheels, compiled_base, bdir, docker_client, monkeypatch):
    from images import abi
    from zoobuild import paths
    from zoobuild.errors import UserError

    monkeypatch.setattr(paths, "BUILD", bdir)
    image = _tf_compiled_base(compiled_base)
    assert abi.check_selected(docker_client, image).python == "3.11"
    with pytest.raises(UserError) as err:
        abi.check_selected(docker_client, image, features=frozenset({"sse", "sse2"}))
    assert "\n" not in str(err.value) and "avx2" in str(err.value) and "target=x86-64" in str(err.value)


def test_same_key_gives_the_same_wheel_bytes(wheels, tmp_path, monkeypatch):
    """Another build directory (cold compiler cache) builds a byte-identical haswell wheel
    (SOURCE_DATE_EPOCH), so images installing it stay up to date across build directories."""
    from images import wheelbuild
    from zoobuild import keys, paths

    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    monkeypatch.setattr(keys, "_CACHE", None)
    plan = wheelbuild.plan("zoobuild-native", "haswell")
    assert plan.key.hex == wheels["avx2"]["key"]
    wheel = wheelbuild.build(plan, log=lambda *a: None, select_it=False)
    assert keys.file_digest(wheel) == wheels["avx2"]["sha256"]


def test_a_second_build_dir_fetches_the_wheel_by_key(wheels, tmp_path, monkeypatch):
    """With a shared cache, a wheel built in one build directory is fetched (not compiled) in
    another: same key, same bytes, and no builder container runs."""
    from images import wheelbuild
    from zoobuild import keys, paths
    from zoobuild.cache import Cache

    cache = Cache((tmp_path / "cache").as_uri())
    monkeypatch.setattr(keys, "_CACHE", None)
    monkeypatch.setattr(paths, "BUILD", tmp_path / "A")
    plan = wheelbuild.plan("zoobuild-native", "haswell")
    built = wheelbuild.build(plan, log=lambda *a: None, select_it=False, cache=cache)
    assert cache.read_manifest(wheelbuild.STAGE, plan.key.hex) is not None

    class NoEngine:                      # B must not touch the engine at all
        def __getattr__(self, name):
            raise AssertionError(f"machine B used the engine ({name})")

    monkeypatch.setattr(paths, "BUILD", tmp_path / "B")
    lines = []
    plan_b = wheelbuild.plan("zoobuild-native", "haswell")
    assert plan_b.key.hex == plan.key.hex
    fetched = wheelbuild.build(plan_b, client=NoEngine(), log=lines.append, select_it=True, cache=cache)
    assert any("fetched" in l and "shared cache" in l for l in lines), lines
    assert fetched.read_bytes() == built.read_bytes() == Path(fetched).read_bytes()
    assert keys.is_complete(plan_b.outdir, plan_b.key)
    assert (tmp_path / "B" / "wheels" / "selected.json").exists()
