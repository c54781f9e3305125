"""The shared cache under the real graph: a second build directory fetches every stage of
`doit export` from the first one's cache, runs no stage action, and gets the same bytes."""
import json
import os
from pathlib import Path

import pytest

from conftest import run_doit

pytestmark = [pytest.mark.slow]

ARGS = ["export", "model=mobilenet_v1_025", "steps=6", "batch_size=4", "train_image_size=96"]


def _tree(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _export_dir(build: Path) -> Path:
    done = [d for d in (build / "export" / "mobilenet_v1_025").iterdir() if (d / ".complete.json").exists()]
    assert len(done) == 1, done
    return done[0]


def test_a_second_build_dir_fetches_the_export_and_trains_nothing(tmp_path):
    cache = (tmp_path / "cache").as_uri()
    a, b = tmp_path / "A", tmp_path / "B"
    first = run_doit(ARGS + [f"cache={cache}"], env={"ZOOBUILD_BUILD_DIR": str(a)})
    assert "cache: 0 fetched" in first.stderr and "uploaded" in first.stderr
    stages = sorted(p.name for p in (tmp_path / "cache" / "keys").iterdir())
    assert stages == ["export", "synthetic", "tfrecords", "tfrecords.shard", "train"]

    why = run_doit(["why", "export:mobilenet_v1_025", f"cache={cache}"] + ARGS[1:],
                   env={"ZOOBUILD_BUILD_DIR": str(b)}, check=False)
    assert f"cached: fetched from {cache}" in why.stdout

    second = run_doit(ARGS + [f"cache={cache}"], env={"ZOOBUILD_BUILD_DIR": str(b)})
    line = next(l for l in second.stderr.splitlines() if "zoobuild: cache:" in l)
    assert line.startswith("zoobuild: cache: 4 fetched, 0 built, 0 uploaded"), line
    assert "train mobilenet_v1_025: new run" not in second.stdout
    assert list((b / "train" / "mobilenet_v1_025").glob("*/model.ckpt-*.index"))  # the run came too
    assert _tree(_export_dir(a)) == _tree(_export_dir(b))

    # a rerun in B is a no-op; without the cache a third dir builds everything itself
    again = run_doit(ARGS + [f"cache={cache}"], env={"ZOOBUILD_BUILD_DIR": str(b)})
    assert "fetched" not in again.stdout
    off = run_doit(ARGS + [f"cache={cache}", "cache_mode=off"],
                   env={"ZOOBUILD_BUILD_DIR": str(tmp_path / "C")})
    assert "train mobilenet_v1_025: new run" in off.stdout


def test_a_flipped_byte_in_a_blob_is_reported_and_rebuilt(tmp_path):
    cache_dir = tmp_path / "cache"
    cache = cache_dir.as_uri()
    args = ["imagenet_tfrecords", f"cache={cache}"]
    run_doit(args, env={"ZOOBUILD_BUILD_DIR": str(tmp_path / "A")})
    manifest = json.loads(next((cache_dir / "keys" / "tfrecords").iterdir()).read_text())
    victim = max(manifest["files"], key=lambda e: e["size"])
    blob = cache_dir / "blobs" / "sha256" / victim["sha256"][:2] / victim["sha256"]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    res = run_doit(args, env={"ZOOBUILD_BUILD_DIR": str(tmp_path / "C")})
    assert f"blob {victim['sha256'][:12]} of {victim['path']} is corrupt" in res.stderr
    assert "1 built" in res.stderr and "1 uploaded" in res.stderr      # rebuilt and replaced
    assert not blob.exists() or blob.read_bytes() != bytes(data)


def _shards(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.glob("*-of-*"))}


def test_shard_ranges_run_on_two_machines_feed_a_third(tmp_path):
    """TFRecords are shared per shard: A converts shards 0:2, B shards 2:4, and C, asking for the
    whole set, fetches all four shards and converts nothing."""
    cache = (tmp_path / "cache").as_uri()
    common = ["imagenet_tfrecords", "train_shards=2", "validation_shards=2", f"cache={cache}"]
    a = run_doit(common + ["shard_range=0:2"], env={"ZOOBUILD_BUILD_DIR": str(tmp_path / "A")})
    assert "parts: 0 fetched, 2 shared" in a.stderr, a.stderr
    b = run_doit(common + ["shard_range=2:4"], env={"ZOOBUILD_BUILD_DIR": str(tmp_path / "B")})
    assert "parts: 0 fetched, 2 shared" in b.stderr, b.stderr
    c = run_doit(common, env={"ZOOBUILD_BUILD_DIR": str(tmp_path / "C")})
    assert "parts: 4 fetched, 0 shared" in c.stderr, c.stderr
    assert "0 skipped" in c.stdout
    out = {m: next((tmp_path / m / "tfrecords" / "synthetic").iterdir()) for m in "ABC"}
    report = json.loads((out["C"] / "conversion_report.json").read_text())
    assert report["shards_fetched"] == 4 and report["shards_written"] == 0 and report["complete"]
    whole = _shards(out["C"])
    assert len(whole) == 4 and whole == {**_shards(out["A"]), **_shards(out["B"])}
    # the finished set is an entry of its own now: a fourth machine fetches it whole
    d = run_doit(common, env={"ZOOBUILD_BUILD_DIR": str(tmp_path / "D")})
    assert "zoobuild: cache: 2 fetched, 0 built, 0 uploaded" in d.stderr, d.stderr
    assert _shards(next((tmp_path / "D" / "tfrecords" / "synthetic").iterdir())) == whole


def test_model_packages_are_fetched_by_key_in_a_second_build_dir(tmp_path):
    cache = str(tmp_path / "cache")
    a = run_doit(["model_packages", f"cache={cache}"], env={"ZOOBUILD_BUILD_DIR": str(tmp_path / "A")})
    n = len(list((tmp_path / "cache" / "keys" / "packages").iterdir()))
    assert n >= 3 and f"0 fetched, {n} built, {n} uploaded" in a.stderr
    b = run_doit(["model_packages", f"cache={cache}"], env={"ZOOBUILD_BUILD_DIR": str(tmp_path / "B")})
    assert f"{n} fetched, 0 built, 0 uploaded" in b.stderr and "(built)" not in b.stdout
    pa = {p.relative_to(tmp_path / "A"): p.read_bytes() for p in (tmp_path / "A").rglob("*.tar.gz")}
    pb = {p.relative_to(tmp_path / "B"): p.read_bytes() for p in (tmp_path / "B").rglob("*.tar.gz")}
    assert len(pa) == n and pa == pb


@pytest.fixture
def s3_cache():
    """A real S3 endpoint on loopback (moto's server) with an empty bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t",
                 region_name="us-east-1").create_bucket(Bucket="zoocache")
    opts = {"endpoint_url": endpoint, "key": "t", "secret": "t", "client_kwargs": {"region_name": "us-east-1"}}
    try:
        yield ["cache=s3://zoocache/team", f"cache_options={json.dumps(opts)}"]
    finally:
        server.stop()


def test_every_stage_of_the_chain_hits_and_misses_on_s3(tmp_path, s3_cache):
    """eval, convert and benchmark (and the stages under them) through a real S3 endpoint: A
    misses and shares each, B fetches each and runs no stage action, with the same results."""
    args = ["eval", "benchmark", "model=mobilenet_v1_025", "steps=6", "batch_size=4",
            "train_image_size=96", "onnx_precisions=fp32", "min_queries=8", "min_duration=0",
            "warmup=1", *s3_cache]
    a = run_doit(args, env={"ZOOBUILD_BUILD_DIR": str(tmp_path / "A")})
    stages = ["synthetic", "tfrecords", "train", "eval", "export", "convert", "benchmark"]
    assert f"cache: 0 fetched, {len(stages)} built, {len(stages)} uploaded" in a.stderr, a.stderr
    b = run_doit(args, env={"ZOOBUILD_BUILD_DIR": str(tmp_path / "B")})
    assert f"cache: {len(stages)} fetched, 0 built, 0 uploaded" in b.stderr, b.stderr
    for stage in ("eval", "convert", "benchmark"):
        files = {m: {p.relative_to(d).as_posix(): p.read_bytes()
                     for d in (tmp_path / m / stage / "mobilenet_v1_025").iterdir()
                     for p in d.rglob("*") if p.is_file()} for m in "AB"}
        assert files["A"] and files["A"] == files["B"], stage
