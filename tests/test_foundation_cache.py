"""The shared cache (zoobuild/cache.py) on a real filesystem and a real S3 endpoint (moto)."""
import json
import multiprocessing
import os
import socket
from pathlib import Path

import pytest

from zoobuild import cache as cache_mod
from zoobuild.cache import MARKER, Cache, CacheError


def finished_dir(root: Path, key_hex: str, payload: bytes = b"weights" * 1000) -> Path:
    d = root / "out"
    (d / "sub").mkdir(parents=True)
    (d / "model.bin").write_bytes(payload)
    (d / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(d / "sub" / "run.sh", 0o755)
    (d / MARKER).write_text(json.dumps({"key": key_hex, "parts": {"stage": "train"}}))
    return d


def tree(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


KEY = "ab" * 32


@pytest.fixture(params=["file", "s3"])
def cache_url(request, tmp_path):
    if request.param == "file":
        yield (tmp_path / "cache").as_uri(), {}
        return
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="zoocache")
    opts = {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"}}
    try:
        yield "s3://zoocache/cache", opts
    finally:
        server.stop()


def test_miss_then_upload_then_hit_gives_the_same_bytes(tmp_path, cache_url):
    url, opts = cache_url
    src = finished_dir(tmp_path / "a", KEY)
    c = Cache(url, "readwrite", opts)
    dest = tmp_path / "b" / "key"
    assert c.fetch("train", KEY, dest) is False and not dest.exists()
    assert "not in cache" in c.lookup("train", KEY)
    assert c.upload("train", KEY, src) is True
    assert c.lookup("train", KEY).startswith(f"cached: fetched from {url}")
    assert c.fetch("train", KEY, dest) is True
    assert tree(dest) == tree(src)
    assert os.stat(dest / "sub" / "run.sh").st_mode & 0o111
    assert json.loads((dest / MARKER).read_text())["key"] == KEY


def test_read_mode_never_uploads_and_off_never_looks(tmp_path):
    url = (tmp_path / "cache").as_uri()
    src = finished_dir(tmp_path / "a", KEY)
    assert Cache(url, "read").upload("train", KEY, src) is False
    assert not (tmp_path / "cache").exists()
    Cache(url, "readwrite").upload("train", KEY, src)
    assert Cache(url, "off").fetch("train", KEY, tmp_path / "x") is False
    assert Cache(url, "read").fetch("train", KEY, tmp_path / "y") is True


def test_an_unfinished_directory_is_not_uploaded(tmp_path):
    src = finished_dir(tmp_path / "a", KEY)
    (src / MARKER).unlink()
    assert Cache((tmp_path / "c").as_uri()).upload("train", KEY, src) is False
    other = finished_dir(tmp_path / "b", "cd" * 32)        # a marker of another key
    assert Cache((tmp_path / "c").as_uri()).upload("train", KEY, other) is False


def test_a_corrupt_blob_is_named_ignored_and_replaced_by_the_next_upload(tmp_path, cache_url, capsys):
    url, opts = cache_url
    src = finished_dir(tmp_path / "a", KEY)
    c = Cache(url, "readwrite", opts)
    c.upload("train", KEY, src)
    manifest = c.read_manifest("train", KEY)
    blob = next(e["sha256"] for e in manifest["files"] if e["path"] == "model.bin")
    fs = c._open()
    data = bytearray(fs.cat_file(c.blob_path(blob)))
    data[10] ^= 0xFF                                       # flip bytes, same size
    with fs.open(c.blob_path(blob), "wb") as f:
        f.write(bytes(data))
    dest = tmp_path / "b" / "key"
    assert c.fetch("train", KEY, dest) is False
    err = capsys.readouterr().err
    assert f"blob {blob[:12]} of model.bin is corrupt" in err and len(err.strip().splitlines()) == 1
    assert not dest.exists() and not list(dest.parent.glob(".*"))   # nothing left behind
    assert not fs.exists(c.blob_path(blob))                 # the bad blob is dropped
    assert c.upload("train", KEY, src) is True             # the rebuild stores it again
    assert c.fetch("train", KEY, dest) is True and tree(dest) == tree(src)


def test_a_truncated_manifest_is_a_miss_with_one_line(tmp_path, capsys):
    c = Cache((tmp_path / "cache").as_uri())
    c.upload("train", KEY, finished_dir(tmp_path / "a", KEY))
    path = Path(c.manifest_path("train", KEY))
    path.write_bytes(path.read_bytes()[:40])
    assert c.fetch("train", KEY, tmp_path / "dest") is False
    assert "truncated" in capsys.readouterr().err
    assert "unusable" in c.lookup("train", KEY)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../escape", "a/../../escape", "./x", "a//b"])
def test_a_path_escaping_manifest_is_refused_and_leaves_nothing(tmp_path, bad, capsys):
    c = Cache((tmp_path / "cache").as_uri())
    c.upload("train", KEY, finished_dir(tmp_path / "a", KEY))
    path = Path(c.manifest_path("train", KEY))
    manifest = json.loads(path.read_text())
    manifest["files"][0]["path"] = bad
    path.write_text(json.dumps(manifest))
    dest = tmp_path / "d" / "key"
    assert c.fetch("train", KEY, dest) is False
    assert "unsafe path" in capsys.readouterr().err
    assert not dest.exists() and not (tmp_path / "escape").exists()
    assert not list((tmp_path / "d").glob(".*"))


def test_links_and_special_files_are_not_uploaded(tmp_path, capsys):
    src = finished_dir(tmp_path / "a", KEY)
    os.symlink("/etc/passwd", src / "link")
    assert Cache((tmp_path / "cache").as_uri()).upload("train", KEY, src) is False
    assert "only regular files" in capsys.readouterr().err
    with pytest.raises(CacheError):
        cache_mod.safe_relpath("..")


def test_an_unreachable_cache_is_one_warning_and_never_fails(tmp_path, capsys):
    with socket.socket() as s:                              # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "k", "secret": "s",
            "client_kwargs": {"region_name": "us-east-1"},
            "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}}
    c = Cache("s3://nobody/cache", "readwrite", opts)
    src = finished_dir(tmp_path / "a", KEY)
    assert c.fetch("train", KEY, tmp_path / "dest") is False
    assert c.upload("train", KEY, src) is False
    assert c.fetch("eval", KEY, tmp_path / "dest2") is False
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(lines) == 1 and "cannot be reached" in lines[0] and "building locally" in lines[0]


def _upload_many(url, src, n):
    c = Cache(url)
    for _ in range(n):
        assert c.upload("train", KEY, src)


def test_two_concurrent_writers_leave_one_valid_entry(tmp_path):
    url = (tmp_path / "cache").as_uri()
    src = finished_dir(tmp_path / "a", KEY, payload=os.urandom(3 << 20))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_upload_many, args=(url, str(src), 5)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    c = Cache(url)
    dest = tmp_path / "dest"
    assert c.fetch("train", KEY, dest) is True and tree(dest) == tree(src)
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_stats_summary_counts_and_bytes():
    s = cache_mod.Stats(fetched=["a"], built=["b", "c"], uploaded=["b"], bytes_down=2048, bytes_up=5)
    assert s.summary() == "cache: 1 fetched, 2 built, 1 uploaded; 2.0 KiB down, 5 B up"


def test_bad_mode_is_one_line():
    from zoobuild.errors import UserError

    with pytest.raises(UserError, match="cache_mode='sometimes': expected one of readwrite, read, off"):
        cache_mod.open_cache("/tmp/x", "sometimes")


def test_produce_builds_once_then_a_second_build_dir_fetches(tmp_path):
    from zoobuild import keys
    from zoobuild.produce import produce

    c = Cache((tmp_path / "cache").as_uri())
    key = keys.Key(stage="export", params={"steps": 6})
    calls = []

    def build(d):
        calls.append(d)
        (d / "saved_model.pb").write_bytes(b"graph" * 100)
        return {"global_step": 6}

    a, b = tmp_path / "A" / key.short, tmp_path / "B" / key.short
    assert produce("export", key, a, build, cache=c) == "built"
    assert produce("export", key, a, build, cache=c) == "done"
    assert produce("export", key, b, build, cache=c) == "fetched"
    assert len(calls) == 1 and tree(a) == tree(b)
    assert keys.is_complete(b, key)
    failing = keys.Key(stage="export", params={"steps": 7})

    def broken(d):
        (d / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        produce("export", failing, tmp_path / "A" / failing.short, broken, cache=c)
    assert not (tmp_path / "A" / failing.short).exists()
    assert "not in cache" in c.lookup("export", failing.hex)


def test_a_run_stopped_part_way_is_shared_and_resumed_elsewhere(tmp_path):
    """in_place stages (training) share what they have when they stop; another machine's run of
    the same key starts from it, not from scratch."""
    from zoobuild import keys
    from zoobuild.produce import produce

    c = Cache((tmp_path / "cache").as_uri())
    key = keys.Key(stage="train", params={"steps": 4})
    seen = []

    def train(d, stop_at=None):
        step = int((d / "checkpoint").read_text()) if (d / "checkpoint").exists() else 0
        seen.append(step)
        while step < 4:
            step += 1
            (d / "checkpoint").write_text(str(step))
            if step == stop_at:
                raise KeyboardInterrupt
        return {"global_step": step}

    a, b = tmp_path / "A" / key.short, tmp_path / "B" / key.short
    with pytest.raises(KeyboardInterrupt):
        produce("train", key, a, lambda d: train(d, stop_at=2), cache=c, in_place=True)
    assert not keys.is_complete(a, key) and c.read_manifest("train", key.hex) is None
    assert c.read_manifest("train.partial", key.hex)["partial"] is True
    assert produce("train", key, b, train, cache=c, in_place=True) == "built"
    assert seen == [0, 2]                      # B resumed at A's step 2
    assert keys.is_complete(b, key) and (b / "checkpoint").read_text() == "4"


def test_a_file_set_entry_lands_beside_what_is_there_and_a_bad_one_leaves_nothing(tmp_path, cache_url, capsys):
    """upload_files/fetch_files: one part of a directory (a TFRecord shard and its manifest)."""
    url, opts = cache_url
    src = tmp_path / "a"
    (src / "parts").mkdir(parents=True)
    (src / "train-00000").write_bytes(os.urandom(5000))
    (src / "parts" / "train-00000.json").write_text('{"count": 3}')
    c = Cache(url, "readwrite", opts)
    assert c.fetch_files("tfrecords.shard", KEY, tmp_path / "b") is False
    assert c.upload_files("tfrecords.shard", KEY, src, ["train-00000", "parts/train-00000.json"])
    dest = tmp_path / "b"
    (dest / "other").mkdir(parents=True)
    (dest / "other" / "kept").write_text("mine")
    assert c.fetch_files("tfrecords.shard", KEY, dest) is True
    assert tree(dest) == {**tree(src), "other/kept": b"mine"}
    # a corrupt blob: named in one line, and neither file lands (not even the good one)
    blob = c.read_manifest("tfrecords.shard", KEY)["files"][1]["sha256"]
    fs = c._open()
    fs.pipe_file(c.blob_path(blob), b'{"count": 4}')
    fresh = tmp_path / "c"
    fresh.mkdir()
    assert c.fetch_files("tfrecords.shard", KEY, fresh) is False
    assert "of parts/train-00000.json is corrupt" in capsys.readouterr().err
    assert list(fresh.rglob("*")) == [fresh / "parts"] or list(fresh.rglob("*")) == []
    with pytest.raises(CacheError):
        cache_mod.safe_relpath("../x")
    assert c.upload_files("tfrecords.shard", "cd" * 32, src, ["../x"]) is False


def test_stats_summary_counts_parts():
    s = cache_mod.Stats(built=["t"], parts_fetched=["a", "b"], parts_uploaded=["c"])
    assert s.summary().endswith("; parts: 2 fetched, 1 shared") and s.any()
