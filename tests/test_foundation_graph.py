"""The doit graph as a user drives it: run cache, typed variables, why, graph, concurrency, kill -9."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DOIT, ROOT, run_doit

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def graph(tmp_path):
    for name in ("minigraph_dodo.py", "minigraph_stage.py"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")  # the why/graph/vars plugins
    (tmp_path / "minigraph_input.txt").write_text("input v1\n")
    env = {"ZOOBUILD_BUILD_DIR": str(tmp_path / "build")}

    def doit(*args, check=True):
        return run_doit(args, cwd=tmp_path, env=env, check=check, dodo=tmp_path / "minigraph_dodo.py")

    doit.dir = tmp_path
    doit.env = env
    doit.runs = lambda: (tmp_path / "build" / "runs.log").read_text().split() \
        if (tmp_path / "build" / "runs.log").exists() else []
    return doit


def test_run_cache_going_back_runs_nothing(graph):
    graph("scale=1")
    assert len(graph.runs()) == 5
    assert (graph.dir / "build" / "total.txt").read_text() == "10"
    graph("scale=1")
    assert len(graph.runs()) == 5, "a no-op run ran parts again"
    graph("scale=3")
    assert len(graph.runs()) == 10 and (graph.dir / "build" / "total.txt").read_text() == "30"
    graph("scale=1")
    assert len(graph.runs()) == 10, "going back to scale=1 re-ran parts whose output exists"
    assert (graph.dir / "build" / "total.txt").read_text() == "10"


def test_code_and_input_edits_make_tasks_stale(graph):
    graph()
    (graph.dir / "minigraph_stage.py").write_text("def value(i, scale):\n    return i * scale + 1\n")
    graph()
    assert len(graph.runs()) == 10
    assert (graph.dir / "build" / "total.txt").read_text() == "15"
    (graph.dir / "minigraph_input.txt").write_text("input v2\n")
    graph()
    assert len(graph.runs()) == 15


def test_bad_variables_get_one_line(graph):
    res = graph("sclae=2", check=False)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown variable 'sclae'" in lines[0] and "scale" in lines[0]
    res = graph("scale=big", check=False)
    assert res.returncode == 2 and res.stderr.strip() == \
        "zoobuild: scale='big': expected an integer (multiplier of every part)"
    res = graph("mode=odd", check=False)
    assert res.returncode == 2 and "expected one of plain, fancy" in res.stderr
    assert not (graph.dir / "build" / "runs.log").exists()


def test_list_why_and_graph(graph):
    out = graph("list").stdout
    assert "part" in out and "total" in out and "The sum of every part." in out
    graph("scale=1")
    res = graph("why", "part:p2", "scale=4", check=False)
    assert res.returncode == 1
    assert "param scale: 1 -> 4" in res.stdout
    res = graph("why", "part:p2", "scale=1")
    assert "up-to-date" in res.stdout
    mermaid = graph("graph").stdout
    assert mermaid.startswith("graph LR") and '["part:p0"]' in mermaid and "-->" in mermaid
    dot = graph("graph", "--format", "dot").stdout
    assert '"part" -> "total"' in dot
    vars_out = graph("vars").stdout
    assert "scale" in vars_out and "multiplier" in vars_out


def test_two_runs_at_once_both_finish_correctly(graph):
    env = dict(os.environ, **graph.env)
    cmd = DOIT + ["-f", str(graph.dir / "minigraph_dodo.py"), "delay=0.3"]
    procs = [subprocess.Popen(cmd, cwd=graph.dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(graph.runs()) == [f"p{i}" for i in range(5)], "a part ran twice or not at all"
    assert (graph.dir / "build" / "total.txt").read_text() == "10"
    assert any("waiting for it to finish" in err for _, err in outs)


def test_kill_9_mid_run_resumes_without_redoing(graph):
    env = dict(os.environ, **graph.env)
    cmd = DOIT + ["-f", str(graph.dir / "minigraph_dodo.py"), "delay=1.0"]
    proc = subprocess.Popen(cmd, cwd=graph.dir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while len(graph.runs()) < 2 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = graph.runs()
    assert 2 <= len(done_before) < 5
    graph("delay=0")
    after = graph.runs()
    assert sorted(after) == [f"p{i}" for i in range(5)], f"finished parts re-ran: {after}"
    assert (graph.dir / "build" / "total.txt").read_text() == "10"
    leftovers = [p for p in (graph.dir / "build" / "part").rglob("*") if ".tmp-" in p.name]
    assert leftovers == [] or all(not (p / ".complete.json").exists() for p in leftovers)


def test_dodo_loads_without_heavy_modules():
    code = ("import sys, time; sys.argv=['doit','list']; t=time.perf_counter(); import dodo; "
            "heavy=[m for m in ('tensorflow','tf_slim','docker','PIL','onnxruntime') if m in sys.modules];"
            "print(heavy)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_bad_input_found_while_loading_the_graph_is_one_line(build_dir, tmp_path):
    missing = tmp_path / "no-such-dir"
    res = run_doit(["imagenet_tfrecords", f"data_dir={missing}", f"out_dir={tmp_path / 'out'}"], check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"zoobuild: data_dir={missing}: not a directory; expected the ILSVRC2012 files"]
    assert not (tmp_path / "out").exists()
