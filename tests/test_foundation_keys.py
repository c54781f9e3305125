"""Content keys, the hash cache, the run cache and typed variables."""
import os
from pathlib import Path

import pytest

from tasks import params
from zoobuild import keys
from zoobuild.errors import UserError


def test_key_changes_with_code_params_inputs_and_not_otherwise(build_dir, tmp_path):
    code = tmp_path / "stage.py"
    code.write_text("def f(): return 1\n")
    base = keys.make_key("s", entries=[code], params={"a": 1, "b": [1, 2]}, inputs={"x": "d1"})
    same = keys.make_key("s", entries=[code], params={"b": [1, 2], "a": 1}, inputs={"x": "d1"})
    assert base.hex == same.hex
    assert keys.make_key("s", entries=[code], params={"a": 2, "b": [1, 2]}, inputs={"x": "d1"}).hex != base.hex
    assert keys.make_key("s", entries=[code], params={"a": 1, "b": [1, 2]}, inputs={"x": "d2"}).hex != base.hex
    assert keys.make_key("t", entries=[code], params={"a": 1, "b": [1, 2]}, inputs={"x": "d1"}).hex != base.hex
    os.utime(code, ns=(1, 1))  # touching without a content change keeps the key
    assert keys.make_key("s", entries=[code], params={"a": 1, "b": [1, 2]}, inputs={"x": "d1"}).hex == base.hex
    code.write_text("def f(): return 2\n")
    assert keys.make_key("s", entries=[code], params={"a": 1, "b": [1, 2]}, inputs={"x": "d1"}).hex != base.hex


def test_hash_cache_reads_a_file_once_and_again_after_change(build_dir, tmp_path):
    f = tmp_path / "big.bin"
    f.write_bytes(b"a" * 1000)
    keys.HashCache.hashed.clear()
    d1 = keys.file_digest(f)
    d2 = keys.file_digest(f)
    assert d1 == d2 and keys.HashCache.hashed.count(str(f)) == 1
    st = f.stat()
    f.write_bytes(b"b" * 1000)  # same size; the mtime moves
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10))
    assert keys.file_digest(f) != d1
    assert keys.HashCache.hashed.count(str(f)) == 2
    # the cache lives in SQLite, so a fresh cache object (a new process) reads nothing
    keys._CACHE = None
    keys.HashCache.hashed.clear()
    keys.file_digest(f)
    assert keys.HashCache.hashed == []


def test_tree_digest_sees_renames_and_content(build_dir, tmp_path):
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "a.txt").write_text("x")
    first = keys.tree_digest(d)
    (d / "sub" / "a.txt").rename(d / "sub" / "b.txt")
    assert keys.tree_digest(d) != first


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out" / "k"
    with pytest.raises(RuntimeError):
        with keys.atomic_dir(final) as tmp:
            (tmp / "half").write_text("partial")
            raise RuntimeError("boom")
    assert not final.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_run_cache_marker(build_dir):
    key = keys.make_key("s", params={"a": 1})
    out = keys.run_dir("s", "n", key)
    assert out == build_dir / "s" / "n" / key.short
    with keys.atomic_dir(out) as tmp:
        keys.mark_complete(tmp, key, {"note": 1})
    assert keys.is_complete(out, key)
    assert not keys.is_complete(out, keys.make_key("s", params={"a": 2}))
    assert keys.key_uptodate(key, out)(None, {}) is True


def test_stale_reasons_name_what_changed():
    old = keys.make_key("s", params={"lr": 0.1, "steps": 5}, inputs={"data": "d1"})
    new = keys.make_key("s", params={"lr": 0.01, "steps": 5}, inputs={"data": "d2"})
    reasons = keys.stale_reasons(new, {"parts": old.parts})
    assert "param lr: 0.1 -> 0.01" in reasons
    assert "inputs data: content changed" in reasons
    assert not any("steps" in r for r in reasons)


def test_typed_var_parsing_and_errors(monkeypatch):
    from doit import doit_cmd

    v = params.Var("zz_steps", int, 10, "steps to run", minimum=1)
    c = params.Var("zz_opt", str, "sgd", "optimizer", choices=("sgd", "adam"))
    monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS", {})
    assert v.get() == 10 and c.get() == "sgd"
    monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS", {"zz_steps": "25", "zz_opt": "adam"})
    assert v.get() == 25 and c.get() == "adam"
    monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS", {"zz_steps": "many"})
    with pytest.raises(UserError, match="zz_steps='many': expected an integer"):
        v.get()
    monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS", {"zz_opt": "lbfgs"})
    with pytest.raises(UserError, match="expected one of sgd, adam"):
        c.get()
    with pytest.raises(TypeError):
        params.Var("zz_steps", str, "x", "same name, other type")


def test_stale_reasons_name_code_library_and_param_changes():
    old = keys.Key("s", code={"slim/convert.py": "a", "slim/old.py": "b"}, params={"steps": 10},
                   libs={"tensorflow-cpu": "2.21.0"})
    new = keys.Key("s", code={"slim/convert.py": "c", "slim/new.py": "d"}, params={"steps": 20},
                   libs={"tensorflow-cpu": "2.22.0", "onnx": "1.17.0"})
    reasons = keys.stale_reasons(new, {"parts": old.parts})
    assert reasons == ["code slim/convert.py: content changed", "code slim/new.py: added",
                       "code slim/old.py: removed", "param steps: 10 -> 20",
                       "library onnx: added '1.17.0'",
                       "library tensorflow-cpu: '2.21.0' -> '2.22.0'"]


def test_make_key_computes_code_and_libs_and_libs_can_be_overridden(build_dir, tmp_path):
    stage = tmp_path / "stage.py"
    stage.write_text("def run():\n    import numpy\n")
    key = keys.make_key("s", entries=[stage])
    assert key.code == {str(stage): keys.file_digest(stage)}
    assert "numpy" in key.libs and key.entries == (str(stage),)
    image = keys.make_key("s", entries=[stage], libs={"image": "k" * 64})
    assert image.libs == {"image": "k" * 64} and image.code == key.code and image.hex != key.hex


def test_another_installed_version_changes_the_key(build_dir, tmp_path, monkeypatch):
    from zoobuild import code

    before = keys.make_key("train", entries=["slim.cli"])
    info = tmp_path / "site" / "tensorflow_cpu-9.9.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tensorflow-cpu\nVersion: 9.9.9\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    code.forget()
    after = keys.make_key("train", entries=["slim.cli"])
    assert after.libs["tensorflow-cpu"] == "9.9.9" and after.hex != before.hex
    assert (f"library tensorflow-cpu: {before.libs['tensorflow-cpu']!r}"
            " -> '9.9.9'") in keys.stale_reasons(after, {"parts": before.parts})
    monkeypatch.undo()
    code.forget()
    assert keys.make_key("train", entries=["slim.cli"]).hex == before.hex


def test_switching_to_the_image_key_is_one_reason():
    local = keys.Key("train", libs={"numpy": "2.4.6", "tensorflow-cpu": "2.21.0"})
    docker = keys.Key("train", libs={"image": "k" * 12})
    assert keys.stale_reasons(docker, {"parts": local.parts}) == [
        "library versions: the installed versions (2 distributions) -> image key 'kkkkkkkkkkkk'"]


def test_no_key_depends_on_where_the_build_directory_is(tmp_path):
    """A key is an address shared between machines (the cache): two build directories give
    every keyed task the same key, or a second machine could never fetch the first one's work."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    dumps = []
    for name in ("A", "B"):
        env = dict(os.environ, ZOOBUILD_BUILD_DIR=str(tmp_path / name))
        res = subprocess.run([sys.executable, str(root / "tests" / "fixtures" / "dump_keys.py"),
                              "onnx_precisions=fp32,int8"], cwd=root, env=env, capture_output=True,
                             text=True, check=True)
        dumps.append({t: v["parts"] for t, v in json.loads(res.stdout).items()})
    assert len(dumps[0]) >= 8 and dumps[0] == dumps[1]
    assert str(tmp_path) not in json.dumps(dumps[0])


def test_only_measurements_are_keyed_on_the_machine(tmp_path):
    """A benchmark's figures belong to the CPU they were measured on: another kind of machine
    (faked flags here) gets another benchmark key (and publish, which ships the figures), and
    every other stage keeps its key, so the cache still shares them."""
    import json
    import subprocess
    import sys

    from zoobuild import machine

    root = Path(__file__).resolve().parent.parent
    dumps = []
    for flags in (None, "fpu sse sse2 avx avx2 fma"):
        env = dict(os.environ, ZOOBUILD_BUILD_DIR=str(tmp_path / "b"))
        env.pop("ZOOBUILD_CPU_FLAGS", None)
        if flags:
            env["ZOOBUILD_CPU_FLAGS"] = flags
        res = subprocess.run([sys.executable, str(root / "tests" / "fixtures" / "dump_keys.py")],
                             cwd=root, env=env, capture_output=True, text=True, check=True)
        dumps.append({t: v["parts"] for t, v in json.loads(res.stdout).items()})
    changed = sorted(t for t in dumps[0] if dumps[0][t] != dumps[1].get(t))
    assert changed and all(t.split(":")[0] in ("benchmark", "publish") for t in changed), changed
    assert {"train", "export", "convert"} <= {t.split(":")[0] for t in dumps[0]} - {"benchmark"}
    changed = [t for t in changed if t.startswith("benchmark")]
    bench = dumps[0][changed[0]]["inputs"]["machine"]
    assert bench == machine.identity() and f"x{machine.cpu_count()} " in bench
    assert dumps[1][changed[0]]["inputs"]["machine"] != bench
