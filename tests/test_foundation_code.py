"""Computed code keys: import closures read from the source, library versions, and the
staleness they give the real graph (`doit why` on a copy of the repo)."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zoobuild import code, dists, keys

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def _write(root: Path, files: dict) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


@pytest.fixture
def tiny(tmp_path, build_dir):
    """A small package tree with every kind of import the closure must see."""
    root = tmp_path / "repo"
    _write(root, {
        "pkg/__init__.py": "",
        "pkg/entry.py": """
            import json
            from pkg import plain

            def run():
                from . import nested          # relative, inside a function
                import numpy                  # third-party, inside a function
                import rich                   # reports only: no key effect
                from pkg.registry import load
                from pkg import later         # no such module yet: an attribute, for now
                return load("one"), "images"  # a bare word that names no sibling module

            COMMAND = ["python3", "-m", "pkg.tool"]   # a package run by name: its __main__
            """,
        "pkg/plain.py": "from .sub.deep import VALUE\n",
        "pkg/nested.py": "X = 1\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "VALUE = 2\n",
        "pkg/registry/__init__.py": """
            import importlib
            TABLE = {"one": "pkg.registry.one", "two": "two"}   # absolute and sibling names

            def load(name):
                return importlib.import_module(TABLE[name])

            def plugin(name):
                return importlib.import_module("pkg.plugins." + name)   # a package prefix
            """,
        "pkg/registry/one.py": "",
        "pkg/registry/two.py": "",
        "pkg/plugins/__init__.py": "",
        "pkg/plugins/alpha.py": "",
        "pkg/plugins/beta.py": "",
        "pkg/unused.py": "import tensorflow\n",
        "pkg/tool/__init__.py": "",
        "pkg/tool/__main__.py": "",
        "images/__init__.py": "",
    })
    code.forget()
    yield root
    code.forget()


def test_closure_sees_nested_relative_and_registry_imports(tiny):
    got = code.closure(["pkg.entry"], root=tiny)
    assert sorted(got.files) == [
        "pkg/__init__.py", "pkg/entry.py", "pkg/nested.py", "pkg/plain.py",
        "pkg/plugins/__init__.py", "pkg/plugins/alpha.py", "pkg/plugins/beta.py",
        "pkg/registry/__init__.py", "pkg/registry/one.py", "pkg/registry/two.py",
        "pkg/sub/__init__.py", "pkg/sub/deep.py", "pkg/tool/__init__.py", "pkg/tool/__main__.py"]
    assert got.files["pkg/nested.py"] == keys.file_digest(tiny / "pkg/nested.py")
    assert "numpy" in got.libs and "rich" not in got.libs
    assert "tensorflow-cpu" not in got.libs  # only pkg/unused.py imports it


def test_closure_is_memoised_by_digest_and_reparses_only_what_changed(tiny, monkeypatch):
    first = code.closure(["pkg.entry"], root=tiny)
    code.forget()  # as a new process: only the SQLite memo is left
    parsed = []
    real = code.parse_imports
    monkeypatch.setattr(code, "parse_imports", lambda src, name="": parsed.append(name) or real(src, name))
    assert code.closure(["pkg.entry"], root=tiny) == first
    assert parsed == []
    (tiny / "pkg/nested.py").write_text("X = 3\nimport pkg.unused\n")
    code.forget()
    again = code.closure(["pkg.entry"], root=tiny)
    assert sorted(Path(p).name for p in parsed) == ["nested.py", "unused.py"]  # edited, newly reached
    assert "pkg/unused.py" in again.files and "tensorflow-cpu" in again.libs


def test_the_reviews_misses_are_in_the_real_closures(build_dir):
    train = code.closure(["slim.cli"])
    for f in ("slim/train.py", "slim/eval.py", "slim/export.py", "slim/optimizers.py",
              "slim/distributed.py", "slim/nets/inception_v4.py", "slim/preprocessing/vgg.py",
              "datasets/reader.py", "slim/compat.py"):
        assert f in train.files, f
    for dist in ("tensorflow-cpu", "tf-slim", "tf-keras", "numpy", "protobuf"):
        assert dist in train.libs, dist
    convert = code.closure(["slim.convert"])
    for f in ("datasets/reader.py", "slim/preprocessing/__init__.py"):
        assert f in convert.files, f
    for dist in ("tf2onnx", "onnx", "onnxruntime", "onnxconverter-common", "tensorflow-cpu"):
        assert dist in convert.libs, dist
    assert "slim/convert/pipeline.py" in code.closure(["slim.benchmark"]).files
    assert not set(dists.NO_EFFECT) & set(code.closure(["slim.benchmark"]).libs)


# --- the real graph, on a copy of the repo -------------------------------------------------------

@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """The tracked files of the repo in a temporary directory, with their own build dir."""
    dest = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True,
                           text=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _env(copy: Path, extra_path: str = "") -> dict:
    env = dict(os.environ, ZOOBUILD_BUILD_DIR=str(copy / "build"),
               PYTHONPATH=os.pathsep.join(filter(None, [extra_path, str(copy)])))
    env.pop("DOCKER_HOST", None)
    return env


def _dump(copy: Path, *words, env=None) -> dict:
    res = subprocess.run([sys.executable, str(FIXTURES / "dump_keys.py"), *words], cwd=copy,
                         env=env or _env(copy), capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def _why(copy: Path, tasks, *words, env=None) -> dict:
    """{task: (status, [reason lines])} from `doit why`."""
    res = subprocess.run([sys.executable, "-m", "doit", "why", *tasks, *words], cwd=copy,
                         env=env or _env(copy), capture_output=True, text=True)
    assert res.returncode in (0, 1), res.stderr
    out, current = {}, None
    for line in res.stdout.splitlines():
        if not line.startswith(" ") and ": " in line:
            current, status = line.split(": ", 1)
            out[current] = (status, [])
        elif current:
            out[current][1].append(line.strip())
    return out


def _named(tasks, *stages) -> list:
    """The subtasks of `stages` (train:<the default model>, ...) among `tasks`."""
    return [next(n for n in tasks if n.split(":")[0] == stage) for stage in stages]


@pytest.fixture
def finished(repo_copy):
    """Every keyed stage of the default graph marked finished for the current keys."""
    shutil.rmtree(repo_copy / "build", ignore_errors=True)
    dumped = _dump(repo_copy, "--complete")
    return {name: d for name, d in dumped.items() if d["outdir"]}


def test_every_keyed_stage_keys_on_its_computed_closure(repo_copy, finished, build_dir):
    stages = {name.split(":")[0] for name in finished}
    assert {"synthetic", "imagenet_tfrecords", "train", "eval", "export", "convert",
            "benchmark", "publish"} <= stages
    for name, d in finished.items():
        assert d["entries"], f"{name} has no entry modules"
        want = code.closure(d["entries"])  # computed here, on the original tree
        assert d["parts"]["code"] == want.files, name
        assert d["parts"]["libs"] == want.libs, name
    why = _why(repo_copy, sorted(finished))
    assert {n: s for n, (s, _) in why.items()} == {n: "up-to-date" for n in finished}


def _edit(path: Path):
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    return original


def test_editing_a_file_in_a_closure_makes_exactly_its_stages_stale(repo_copy, finished):
    target = "slim/optimizers.py"
    users = {n for n, d in finished.items() if target in d["parts"]["code"]}
    assert set(_named(finished, "train", "eval", "export")) <= users
    assert "synthetic" not in users
    original = _edit(repo_copy / target)
    try:
        why = _why(repo_copy, sorted(finished))
    finally:
        (repo_copy / target).write_text(original)
    for name in finished:
        status, reasons = why[name]
        if name in users:
            assert status != "up-to-date", name
            assert f"code {target}: content changed" in reasons, (name, reasons)
        else:   # a stage downstream of a user (convert after export) is stale through its inputs only
            assert not any(r.startswith("code ") for r in reasons), (name, reasons)
            assert status == "up-to-date" or any(r.startswith("inputs ") for r in reasons), (name, reasons)


def test_every_file_of_every_closure_changes_exactly_the_keys_that_hold_it(repo_copy, finished,
                                                                          build_dir):
    """In process on the copy (one `doit why` per file would take a minute): append to each
    file of the union of the closures and recompute every stage's closure."""
    stages = {name: (d["entries"], d["parts"]["code"]) for name, d in finished.items()}
    union = sorted({f for _, files in stages.values() for f in files})
    assert len(union) > 30
    for rel in union:
        original = _edit(repo_copy / rel)
        try:
            for name, (entries, before) in stages.items():
                now = code.closure(entries, root=repo_copy).files
                if rel in before:
                    assert now[rel] != before[rel], (rel, name)
                    assert {f for f in now if now[f] != before.get(f)} == {rel}, (rel, name)
                else:
                    assert now == before, (rel, name)
        finally:
            (repo_copy / rel).write_text(original)


def test_editing_a_file_outside_every_closure_makes_nothing_stale(repo_copy, finished):
    outside = "tasks/cli.py"  # loaded by doit, run by no stage
    assert all(outside not in d["parts"]["code"] for d in finished.values())
    original = _edit(repo_copy / outside)
    try:
        why = _why(repo_copy, sorted(finished))
    finally:
        (repo_copy / outside).write_text(original)
    assert {n: s for n, (s, _) in why.items()} == {n: "up-to-date" for n in finished}


def test_another_tensorflow_version_makes_the_tensorflow_stages_stale(repo_copy, finished, tmp_path):
    from importlib import metadata

    fake = tmp_path / "site"
    info = fake / "tensorflow_cpu-2.99.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tensorflow-cpu\nVersion: 2.99.0\n")
    why = _why(repo_copy, sorted(finished), env=_env(repo_copy, str(fake)))
    line = f"library tensorflow-cpu: {metadata.version('tensorflow-cpu')!r} -> '2.99.0'"
    for name in _named(finished, "train", "eval", "export", "convert"):
        status, reasons = why[name]
        assert status != "up-to-date" and line in reasons, (name, reasons)
    for name in ("synthetic", "imagenet_tfrecords"):  # no tensorflow in their closures
        assert why[name][0] == "up-to-date", why[name]


def test_reporting_only_options_find_the_finished_run(repo_copy, finished, monkeypatch, build_dir):
    reporting = ["log_every_n_steps=500", "save_summaries_secs=5", "save_interval_secs=7",
                 "save_interval_steps=3"]
    stages = _named(finished, "train", "eval", "export")
    why = _why(repo_copy, stages, *reporting)
    assert {n: s for n, (s, _) in why.items()} == {n: "up-to-date" for n in stages}
    train_task = stages[0]
    steps = finished[train_task]["parts"]["params"]["steps"]
    why = _why(repo_copy, [train_task], f"steps={steps + 1}")
    assert why[train_task][0] != "up-to-date"
    assert f"param steps: {steps} -> {steps + 1}" in why[train_task][1]
    # the job still receives them
    from doit import doit_cmd
    from tasks import train

    monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS", dict(w.split("=") for w in reporting))
    cfg = train._job(train_task.split(":")[1])["cfg"]
    assert (cfg["log_every_n_steps"], cfg["save_summaries_secs"], cfg["save_interval_secs"],
            cfg["save_interval_steps"]) == (500, 5, 7, 3)


def test_a_new_module_joins_a_remembered_closure(tiny):
    assert "pkg/later.py" not in code.closure(["pkg.entry"], root=tiny).files
    code.forget()  # a new process finds the closure remembered in SQLite ...
    (tiny / "pkg/later.py").write_text("")  # ... but a path it probed exists now
    assert "pkg/later.py" in code.closure(["pkg.entry"], root=tiny).files


def test_a_file_that_does_not_parse_keeps_its_digest_and_the_graph_loads(tiny):
    (tiny / "pkg/nested.py").write_text("def broken(:\n")
    got = code.closure(["pkg.entry"], root=tiny)
    assert got.files["pkg/nested.py"] == keys.file_digest(tiny / "pkg/nested.py")


def test_runner_docker_keys_on_the_image_not_the_installed_versions(repo_copy, tmp_path):
    fake = tmp_path / "site"
    info = fake / "tensorflow_cpu-2.99.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tensorflow-cpu\nVersion: 2.99.0\n")
    plain = _dump(repo_copy, "runner=docker", "bench_runner=docker")
    faked = _dump(repo_copy, "runner=docker", "bench_runner=docker", env=_env(repo_copy, str(fake)))
    for name in _named(plain, "train", "eval", "export", "benchmark"):
        libs = plain[name]["parts"]["libs"]
        assert set(libs) == {"image"}, (name, libs)
        assert faked[name]["parts"]["libs"] == libs, name
    convert = _named(faked, "convert")[0]
    assert faked[convert]["parts"]["libs"]["tensorflow-cpu"] == "2.99.0"  # runs here
