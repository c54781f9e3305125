"""build_wheel without the engine: recipes, CPU targets, keys, ABI and ISA checks."""
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from images import abi, cpu, wheelbuild
from zoobuild.errors import UserError

ROOT = Path(__file__).resolve().parent.parent

CPUINFO_HASWELL = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse sse2 ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt avx f16c bmi1 avx2 bmi2
"""
BOOKWORM_311 = {"implementation": "cpython", "version": [3, 11], "soabi": "cpython-311-x86_64-linux-gnu",
                "platform": "linux-x86_64", "glibc": "2.36", "debug": False}


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# --- recipes ---------------------------------------------------------------------

def test_shipped_recipes_load():
    names = wheelbuild.recipe_names()
    assert {"zoobuild-native", "tensorflow"} <= set(names)
    tf = wheelbuild.load_recipe("tensorflow")
    assert tf.source["git"].endswith("tensorflow.git") and tf.source["ref"]
    assert tf.network and "--disk_cache=/cache" in tf.build and "$ZOOBUILD_BAZEL_COPTS" in tf.build
    assert {"time", "disk"} <= set(tf.resources)
    native = wheelbuild.load_recipe("zoobuild-native")
    assert not native.network and native.python == "3.11"


def _write_recipe(tmp_path, name="r", **changes):
    import yaml

    data = yaml.safe_load((wheelbuild.RECIPE_DIR / "zoobuild-native.yml").read_text())
    data["name"] = name
    data["source"] = dict(data["source"], path=str(ROOT / "native"))
    data.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data[key]
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("changes,expect", [
    ({"pyton": "3.11"}, "unknown field 'pyton'"),
    ({"build": None}, "missing field 'build'"),
    ({"python": 3.11}, "quote it"),
    ({"timeout_s": "ten"}, "field 'timeout_s'"),
    ({"env": {"CFLAGS": "{cflgs}"}}, "{cflgs}"),
    ({"source": {"git": "https://example.org/x.git"}}, "needs a 'ref'"),
    ({"targets": ["pentium"]}, "'pentium'"),
])
def test_bad_recipe_is_one_line(tmp_path, changes, expect):
    path = _write_recipe(tmp_path, **changes)
    with pytest.raises(UserError) as err:
        wheelbuild.load_recipe(path)
    assert expect in one_line(err) and "r.yml" in str(err.value)


def test_unknown_recipe_name_lists_choices():
    with pytest.raises(UserError) as err:
        wheelbuild.load_recipe("tensorfow")
    assert "zoobuild-native" in one_line(err)


# --- CPU targets -------------------------------------------------------------------

def test_host_features_from_cpuinfo():
    feats = cpu.host_features(CPUINFO_HASWELL)
    assert {"avx2", "fma", "sse2"} <= feats and "avx512f" not in feats
    assert cpu.best_target(feats).name == "haswell"
    assert cpu.best_target(frozenset({"sse", "sse2"})).name == "x86-64"


def test_target_flag_map():
    assert "-march=haswell" in cpu.TARGETS["haswell"].cflags and cpu.TARGETS["haswell"].label == "avx2"
    assert "-march=x86-64" in cpu.TARGETS["x86-64"].cflags
    assert "--copt=-march=skylake-avx512" in cpu.TARGETS["skylake-avx512"].bazel_copts
    assert {"amx_tile", "avx512_fp16"} <= cpu.TARGETS["sapphirerapids"].required
    # cumulative: every newer target requires what the older ones do
    order = ["x86-64", "haswell", "skylake-avx512", "icelake-server", "sapphirerapids"]
    for older, newer in zip(order, order[1:]):
        assert cpu.TARGETS[older].required < cpu.TARGETS[newer].required
    native = cpu.resolve("native", cpu.host_features(CPUINFO_HASWELL))
    assert native.cflags[-1] == "-march=native" and "avx2" in native.required and "vme" not in native.required
    with pytest.raises(UserError) as err:
        cpu.resolve("pentium4")
    assert "haswell" in one_line(err)


def test_env_override_plays_an_older_cpu(monkeypatch):
    monkeypatch.setenv("ZOOBUILD_CPU_FLAGS", "sse sse2")
    with pytest.raises(UserError) as err:
        cpu.check_host_runs(cpu.TARGETS["haswell"])
    assert "avx2" in one_line(err) and "target=x86-64" in str(err.value)


# --- keys ------------------------------------------------------------------------

def test_key_follows_source_target_and_recipe(tmp_path, build_dir):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "native", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so"))
    recipe = _write_recipe(tmp_path, source={"path": str(src), "exclude": ["build"]})
    k1 = wheelbuild.plan(recipe, "haswell").key
    assert wheelbuild.plan(recipe, "haswell").key.hex == k1.hex
    assert wheelbuild.plan(recipe, "x86-64").key.hex != k1.hex
    (src / "build").mkdir(exist_ok=True)
    (src / "build" / "junk.o").write_text("build output is not source")
    assert wheelbuild.plan(recipe, "haswell").key.hex == k1.hex
    kernel = src / "zoobuild_native" / "_kernels.c"
    kernel.write_text(kernel.read_text() + "\n/* changed */\n")
    k2 = wheelbuild.plan(recipe, "haswell").key
    assert k2.hex != k1.hex
    recipe.write_text(recipe.read_text() + "\n# comment\n")
    assert wheelbuild.plan(recipe, "haswell").key.hex != k2.hex
    p = wheelbuild.plan(recipe, "haswell")
    assert p.outdir == build_dir / "wheels" / "r" / "haswell" / p.key.short


def test_container_env_substitutes_placeholders():
    p = wheelbuild.plan("zoobuild-native", "haswell")
    env = wheelbuild.container_env(p)
    assert env["ZOOBUILD_LOCAL_VERSION"] == "avx2"
    assert "-march=haswell" in env["ZOOBUILD_CFLAGS"] and "avx2" in env["ZOOBUILD_ISA_REQUIRED"].split()


# --- ABI -------------------------------------------------------------------------

def test_abi_tags_accept_matching_and_refuse_cp35():
    accepted = abi.tags_for(BOOKWORM_311, "python:3.11-slim-bookworm")
    for ok in ("cp311-cp311-linux_x86_64", "cp311-cp311-manylinux_2_17_x86_64",
               "cp311-cp311-manylinux2014_x86_64", "cp39-abi3-manylinux_2_28_x86_64", "py3-none-any"):
        assert accepted.accepts([ok]), ok
    for bad in ("cp35-cp35m-linux_x86_64", "cp312-cp312-linux_x86_64", "cp311-cp311-manylinux_2_38_x86_64",
                "cp311-cp311-linux_aarch64"):
        assert not accepted.accepts([bad]), bad
    with pytest.raises(UserError) as err:
        abi.check_wheel_tags("tensorflow-1.4.0-cp35-cp35m-linux_x86_64.whl", accepted)
    line = one_line(err)
    assert "cp35-cp35m-linux_x86_64" in line and "Python 3.11" in line and "python:3.11-slim-bookworm" in line
    abi.check_wheel_tags("zoobuild_native-0.1.0+avx2-cp311-cp311-linux_x86_64.whl", accepted)


def _fake_wheel(tmp_path, name, isa=None):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg/__init__.py", "")
        if isa is not None:
            z.writestr("pkg/zoobuild_isa.json", json.dumps(isa))
    return path


def test_isa_check_refuses_missing_features(tmp_path):
    haswell_cpu = cpu.host_features(CPUINFO_HASWELL)
    old_cpu = frozenset({"sse", "sse2"})
    # from the wheel's local label
    tf = _fake_wheel(tmp_path, "tensorflow_cpu-2.21.0+avx512-cp311-cp311-linux_x86_64.whl")
    with pytest.raises(UserError) as err:
        abi.check_isa(tf, haswell_cpu)
    assert "avx512f" in one_line(err) and "target=haswell" in str(err.value)
    abi.check_isa(_fake_wheel(tmp_path, "tensorflow_cpu-2.21.0+avx2-cp311-cp311-linux_x86_64.whl"), haswell_cpu)
    # from the file the native build embeds (wins over the label)
    native = _fake_wheel(tmp_path, "zoobuild_native-0.1.0+native-cp311-cp311-linux_x86_64.whl",
                         {"target": "native", "required": ["avx2", "fma", "sse2"]})
    with pytest.raises(UserError) as err:
        abi.check_isa(native, old_cpu)
    assert "avx2, fma" in one_line(err) and "target=x86-64" in str(err.value)
    # a generic wheel needs nothing special
    abi.check_isa(_fake_wheel(tmp_path, "six-1.16.0-py2.py3-none-any.whl"), old_cpu)


def test_tensorflow_recipe_gets_the_target_flags():
    p = wheelbuild.plan("tensorflow", "skylake-avx512")
    env = wheelbuild.container_env(p)
    assert env["CC_OPT_FLAGS"] == "-O3 -march=skylake-avx512" and env["TF_PYTHON_VERSION"] == "3.11"
    assert env["ZOOBUILD_BAZEL_COPTS"] == "--copt=-march=skylake-avx512" and env["ZOOBUILD_LABEL"] == "avx512"
    assert p.outdir.parts[-3:-1] == ("tensorflow", "skylake-avx512")


def test_bad_target_on_the_command_line_is_one_line():
    from tests.conftest import run_doit

    res = run_doit(["build_wheel", "target=pentium4"], check=False, timeout=120)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "target='pentium4'" in lines[0] and "haswell" in lines[0]


def test_wheel_stock_drops_the_selection(build_dir):
    from tests.conftest import run_doit

    sel = build_dir / "wheels" / "selected.json"
    sel.parent.mkdir(parents=True)
    sel.write_text('{"wheel": "x.whl"}')
    env = {"ZOOBUILD_BUILD_DIR": str(build_dir)}
    out = run_doit(["build_wheel", "wheel=stock"], env=env, timeout=120).stdout
    assert not sel.exists() and "selected stock tensorflow-cpu==2.21" in out
    again = run_doit(["build_wheel", "wheel=stock"], env=env, timeout=120).stdout
    assert "-- build_wheel:stock" in again


def test_tensorflow_recipe_relabels_a_wheel_pip_accepts(tmp_path):
    """The recipe's post-build step (run here on a stand-in wheel) gives the wheel +<label>
    in its file name, METADATA and a RECORD whose hashes are right; pip installs the result."""
    import base64
    import hashlib
    import subprocess
    import sys

    build = wheelbuild.load_recipe("tensorflow").build
    script = build.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    info = "tensorflow_cpu-2.21.0.dist-info"
    src = tmp_path / "tensorflow_cpu-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("tensorflow_stub/__init__.py", "X = 1\n")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: tensorflow-cpu\nVersion: 2.21.0\n\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                                    "Tag: cp311-cp311-manylinux_2_27_x86_64\n")
        z.writestr(f"{info}/RECORD", "stale\n")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([sys.executable, "-", str(src), str(out), "avx2"], input=script, text=True, check=True)
    (dst,) = out.iterdir()
    assert dst.name == "tensorflow_cpu-2.21.0+avx2-cp311-cp311-manylinux_2_27_x86_64.whl"
    assert abi.wheel_isa(dst) == ("haswell", cpu.TARGETS["haswell"].required)
    with zipfile.ZipFile(dst) as z:
        new_info = "tensorflow_cpu-2.21.0+avx2.dist-info"
        assert "Version: 2.21.0+avx2\n" in z.read(f"{new_info}/METADATA").decode()
        for row in z.read(f"{new_info}/RECORD").decode().splitlines():
            path, digest, size = row.split(",")
            if digest:
                data = z.read(path)
                assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert int(size) == len(data)
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                          "--target", str(tmp_path / "site"), str(dst)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "site" / "tensorflow_stub" / "__init__.py").exists()
