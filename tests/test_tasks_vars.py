"""Consistent edges: every variable checked at load, one command-line parser, one field
checker, one uptodate wrapper, one atomic write helper, one exit-status convention."""
import importlib
import json
import re
import sys

import pytest

from conftest import ROOT, run_doit
from zoobuild.errors import BAD_INPUT, FAILED, UserError, cli_main


# ---------------------------------------------------------------- bad values stop the load

def _bad_cluster_yaml(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("worker: [127.0.0.1:2222\n  ps: - oops\n")
    return f"cluster={path}"


BAD_VALUES = {
    "batch_size=0": (["train", "batch_size=0"], "batch_size", ">= 1"),
    "steps=-5": (["train", "steps=-5"], "steps", ">= 1"),
    "malformed cluster YAML": (["train", _bad_cluster_yaml], "cluster", "expected"),
    "version=1.2": (["publish", "version=1.2"], "version", "X.Y.Z"),
    "version=v1.2.0": (["publish", "version=v1.2.0"], "version", "X.Y.Z"),
    "cores=-1": (["benchmark", "cores=-1"], "cores", ">= 0"),
    "instances=0": (["benchmark", "instances=0"], "instances", ">= 1"),
    "version range for publish": (["publish", "version=^1.0"], "version", "exact release"),
    "shard_range beyond the shards": (["imagenet_tfrecords", "train_shards=4", "validation_shards=2",
                                       "shard_range=3:9"], "shard_range", "HI <= 6"),
    "store_options not an object": (["publish", "store_options=[1]"], "store_options", "JSON object"),
    "image_args not K=V": (["images", "image_args=A=1,FOO"], "image_args", "expected NAME=value"),
    "registry without a port": (["push", "registry=localhost"], "registry", "HOST:PORT"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_value_is_one_line_exit_2_and_nothing_runs(case, tmp_path, build_dir):
    words, name, expected = BAD_VALUES[case]
    args = [w(tmp_path) if callable(w) else w for w in words]
    res = run_doit(args, check=False, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == BAD_INPUT, (res.returncode, res.stdout, res.stderr)
    assert len(lines) == 1, res.stderr
    assert name in lines[0] and expected in lines[0] and "Traceback" not in res.stderr, lines[0]
    assert lines[0].startswith("zoobuild: ")
    stages = {"train", "eval", "export", "convert", "benchmark", "publish", "tfrecords", "synthetic"}
    assert not stages & {p.name for p in build_dir.iterdir()}, sorted(build_dir.iterdir())
    assert "." not in res.stdout   # no task started (doit prints `.  task` for each)


def test_good_values_pass_the_load(tmp_path, build_dir):
    """The same variables with values in range load; a version range is fine for fetch."""
    res = run_doit(["list", "batch_size=1", "steps=1", "cores=0", "instances=2",
                    "version=1.2.0-20261121"], check=False, timeout=120)
    assert res.returncode == 0, res.stderr
    store = tmp_path / "store"
    store.mkdir()
    res = run_doit(["fetch", "version=^1.0", f"store={store}", f"fetch_dir={tmp_path / 'f'}"],
                   check=False, timeout=120)
    # the load accepted it; fetch itself ran and found nothing in the empty store
    assert res.returncode == FAILED and "no published versions" in res.stdout + res.stderr


# ---------------------------------------------------------------- every variable declares its values

def _all_vars():
    from tasks import params

    for mod in ("tasks.engine", "tasks.wheel", "tasks.images", "tasks.data", "tasks.train",
                "tasks.exports", "tasks.convert", "tasks.benchmark", "tasks.publish"):
        importlib.import_module(mod)
    return params.registry()


def test_every_number_variable_declares_its_range():
    missing = [f"{v.owner}:{name}" for name, decls in _all_vars().items() for v in decls
               if v.type in (int, float) and v.choices is None
               and v.minimum is None and v.maximum is None]
    assert not missing, f"numbers without a declared range: {missing}"


def test_every_default_is_a_valid_value():
    for name, decls in _all_vars().items():
        for var in decls:
            if var.type is list or var.default == "":
                continue
            text = str(var.default).lower() if var.type is bool else str(var.default)
            assert var.parse(text) == var.default, name


def test_model_is_declared_once_and_shared():
    reg = _all_vars()
    assert [v.owner for v in reg["model"]] == ["tasks.common"]
    from tasks import common, publish, train

    assert train.MODEL is common.MODEL and publish.MODEL is common.MODEL


@pytest.fixture
def scratch_vars():
    """Variables declared by a test leave the registry afterwards."""
    from tasks import params

    before = {name: list(decls) for name, decls in params.registry().items()}
    yield
    params.registry().clear()
    params.registry().update(before)


def test_doit_vars_shows_the_valid_values(build_dir):
    lines = {line.split()[0]: line for line in run_doit(["vars"], timeout=120).stdout.splitlines()}
    assert "valid: an integer >= 1" in lines["batch_size"]
    assert "valid: an integer >= 0" in lines["cores"]
    assert "valid: X.Y.Z" in lines["version"]
    assert "one of {" in lines["model"]


def test_ranges_and_formats_in_words(scratch_vars):
    from tasks.params import Var, release_or_range

    rate = Var("test_rate_xyz", float, 0.5, "a rate", minimum=0.0, maximum=1.0)
    assert rate.parse("1") == 1.0
    with pytest.raises(UserError, match=r"test_rate_xyz='1.5': expected a number from 0.0 to 1.0"):
        rate.parse("1.5")
    count = Var("test_count_xyz", int, 1, "a count", minimum=1)
    with pytest.raises(UserError, match=r"test_count_xyz='true': expected an integer \(a count\)"):
        count.parse("true")
    with pytest.raises(UserError, match=r"test_count_xyz='0': expected an integer >= 1 \(a count\)"):
        count.parse("0")
    version = Var("test_version_xyz", str, "", "a release", check=release_or_range)
    for good in ("1.2.0", "1.2.0-20261121", "^1.2", "~1.2.3", "latest", "bleedingedge", ""):
        assert version.parse(good) == good
    for bad in ("1.2", "v1.2.0", "1.2.0-2026", "^x"):
        with pytest.raises(UserError, match=re.escape(f"test_version_xyz='{bad}': expected")):
            version.parse(bad)
    assert version.expected().startswith("X.Y.Z")


# ---------------------------------------------------------------- one command-line parser

def test_command_line_words():
    from tasks.cmdline import parse

    line = parse(["-n", "2", "build_wheel", "images", "wheel=stock"])
    assert (line.command, line.tasks, line.variables) == ("run", ("build_wheel", "images"),
                                                          {"wheel": "stock"})
    line = parse(["why", "train:vgg_16", "model=a=b"])
    assert line.command == "why" and line.tasks == ("train:vgg_16",)
    assert line.variables == {"model": "a=b"}       # split at the first '=' as doit does
    assert parse(["graph", "--format", "dot", "train"]).tasks == ("train",)
    assert parse(["eval:inception_v3", "eval", "train:x"]).named("eval") == ["inception_v3", ""]


def test_which_stages_a_command_runs():
    from tasks.cmdline import parse

    main_job = ["train", "publish"]
    assert parse([], main_job).runs("publish")              # the main job
    assert not parse([], main_job).runs("fetch")
    assert parse(["publish:vgg_16"], main_job).runs("publish")
    assert not parse(["fetch", "version=^1"], main_job).runs("publish")
    assert not parse(["list"], main_job).runs("publish")    # list runs nothing
    assert parse([]).runs("anything")                       # main job unknown: assume all


def test_selected_models_come_from_the_parser():
    from tasks.train import selected_models

    assert selected_models(["-v", "2", "eval:inception_v3", "train:nope", "export"])[1:] == \
        ["inception_v3"]


# ---------------------------------------------------------------- one field checker

def test_field_checker():
    from zoobuild.fields import check_fields

    fields = {"name": str, "jobs": int, "rate": float, "env": dict, "network": bool}
    check_fields({"name": "r", "jobs": 2, "rate": 1, "env": None}, fields, ("name",), where="r.yml")
    cases = [({"name": "r", "jobz": 2}, "r.yml: unknown field 'jobz'; expected one of name, jobs"),
             ({"jobs": 2}, "r.yml: missing field 'name' (expected a string)"),
             ({"name": None}, "missing field 'name'"),
             ({"name": "r", "jobs": True}, "field 'jobs' is True; expected an integer, got bool"),
             ({"name": "r", "network": "yes"}, "field 'network' is 'yes'; expected true or false")]
    for data, message in cases:
        with pytest.raises(UserError) as err:
            check_fields(data, fields, ("name",), where="r.yml")
        assert message in str(err.value) and "\n" not in str(err.value)
    seen = []

    def fail(name, message):
        seen.append(name)
        raise UserError(message)

    with pytest.raises(UserError):
        check_fields({"name": 3}, fields, fail=fail)
    assert seen == ["name"]


def test_specs_and_recipes_share_the_checker(tmp_path):
    """Both loaders report a mistyped field in the checker's words."""
    import yaml

    from images import spec, wheelbuild

    data = yaml.safe_load((wheelbuild.RECIPE_DIR / "zoobuild-native.yml").read_text())
    data.update(name="r", jobs="two", source={"path": "native"})
    (tmp_path / "r.yml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=r"r.yml: field 'jobs' is 'two'; expected an integer"):
        wheelbuild.load_recipe(tmp_path / "r.yml")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yml").write_text("releases:\n  r:\n    tag_specs: x\n")
    with pytest.raises(spec.SpecError, match=r"a.yml:3: releases.r.tag_specs: field 'tag_specs' "
                                             r"is 'x'; expected a list"):
        spec.load(specs, root=tmp_path)


# ---------------------------------------------------------------- one uptodate wrapper

def test_uptodate_wrapper_turns_expected_failures_into_stale():
    import docker.errors

    from tasks.uptodate import stale_on_error

    def raising(err):
        def check():
            raise err
        return check

    for err in (UserError("no engine"), FileNotFoundError("gone"),
                docker.errors.ImageNotFound("no such image")):
        assert stale_on_error(raising(err))(None, {}) is False
    assert stale_on_error(lambda: 1)(None, {}) is True
    assert stale_on_error(lambda task, values: values["ok"], "named")(None, {"ok": 0}) is False
    assert stale_on_error(lambda: 1, "named").__name__ == "named"


def test_uptodate_wrapper_lets_programming_errors_raise():
    from tasks.uptodate import stale_on_error

    with pytest.raises(KeyError):
        stale_on_error(lambda: {}["typo"])(None, {})
    with pytest.raises(TypeError):
        stale_on_error(lambda task, values: None + 1)(None, {})


# ---------------------------------------------------------------- one atomic write helper

def _left(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir())


def test_atomic_write_failure_leaves_nothing(tmp_path):
    from zoobuild import atomic

    with pytest.raises(RuntimeError):
        with atomic.atomic_open(tmp_path / "a.json", "w") as f:
            f.write("half")
            raise RuntimeError("crash mid-write")
    with pytest.raises(TypeError):
        atomic.write_json(tmp_path / "b.json", {"x": object()}, default=None)
    with pytest.raises(FileNotFoundError):
        atomic.copy_file(tmp_path / "missing", tmp_path / "c")
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(tmp_path / "d") as d:
            (d / "part").write_text("x")
            raise RuntimeError("crash mid-directory")
    assert _left(tmp_path) == []


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    from zoobuild import atomic

    atomic.write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(tmp_path / "a.txt") as f:
            f.write("new")
            raise RuntimeError
    assert (tmp_path / "a.txt").read_text() == "old" and _left(tmp_path) == ["a.txt"]
    atomic.write_json(tmp_path / "a.txt", {"new": 1})
    assert json.loads((tmp_path / "a.txt").read_text()) == {"new": 1}


# ---------------------------------------------------------------- one exit-status convention

def test_cli_main_exit_statuses(capsys):
    @cli_main
    def bad(argv=None):
        raise UserError("thing='x': expected y")

    assert bad() == BAD_INPUT
    assert capsys.readouterr().err == "zoobuild: thing='x': expected y\n"
    assert cli_main(lambda: None)() == 0
    assert cli_main(lambda: FAILED)() == FAILED
    with pytest.raises(ZeroDivisionError):
        cli_main(lambda: 1 / 0)()


def test_slim_cli_bad_config_is_one_line_exit_2(tmp_path):
    import subprocess

    cfg = tmp_path / "job.json"
    cfg.write_text("{not json")
    res = subprocess.run([sys.executable, "-m", "slim.cli", "eval", "--config", str(cfg)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == BAD_INPUT
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--config" in lines[0] and "expected a job JSON" in lines[0]
