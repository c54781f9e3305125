"""Run an image's spec'd tests inside it, with no network.

Every test of every slice along the image's chain runs (a base test runs in each image
built on the base).  `as_caller: true` runs through the entrypoint as LOCAL_USER_ID /
LOCAL_GROUP_ID (the caller's uid/gid unless given); `mount: /path` mounts a fresh host
directory there, and the test then checks that every file written into it belongs to
that uid/gid.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from zoobuild import keys, machine, paths
from zoobuild.errors import UserError

TEST_TIMEOUT_S = 900


def test_key(img, image_id: str, uid: int, gid: int) -> keys.Key:
    tests = [{"name": t.name, "command": t.command, "as_caller": t.as_caller, "mount": t.mount}
             for t in img.tests]
    return keys.make_key("image_tests", entries=["images.imagetest"],
                         params={"tag": img.tag, "tests": tests, "uid": uid, "gid": gid},
                         inputs={"image": image_id, "machine": machine.identity(),
                                 "entrypoint.sh": keys.file_digest(Path(__file__).with_name("entrypoint.sh"))})


def _owners(root: Path) -> set:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, n))
            out.add((st.st_uid, st.st_gid))
    return out


def run_one(client, img, test, uid: int, gid: int, log=print) -> dict:
    env = {}
    volumes = {}
    host_dir = None
    if test.as_caller:
        env.update(LOCAL_USER_ID=str(uid), LOCAL_GROUP_ID=str(gid))
    if test.mount:
        host_dir = Path(tempfile.mkdtemp(prefix=f"zoo-test-{test.name}-", dir=paths.BUILD))
        os.chmod(host_dir, 0o777)
        volumes[str(host_dir)] = {"bind": test.mount, "mode": "rw"}
    t0 = time.monotonic()
    container = client.containers.run(img.tag, ["sh", "-c", test.command], detach=True,
                                      network_mode="none", environment=env, volumes=volumes)
    try:
        try:
            status = container.wait(timeout=TEST_TIMEOUT_S)
            rc = status.get("StatusCode", 1)
        except Exception as err:  # requests' ReadTimeout and friends
            container.kill()
            rc, status = 124, {"Error": str(err)}
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    result = {"name": test.name, "rc": rc, "seconds": round(time.monotonic() - t0, 2),
              "output_tail": output[-2000:]}
    if host_dir is not None:
        owners = _owners(host_dir)
        result["files_owned_by"] = [list(o) for o in sorted(owners)]
        want = {(uid, gid)} if test.as_caller else None
        if rc == 0 and want is not None and owners - want:
            result["rc"] = 1
            result["output_tail"] += f"\nfiles in {test.mount} owned by {sorted(owners)}, expected {uid}:{gid}"
        if rc == 0 and not owners and test.as_caller:
            result["rc"] = 1
            result["output_tail"] += f"\nthe test wrote nothing to {test.mount}"
        shutil.rmtree(host_dir, ignore_errors=True)
    log(f"  {img.name}: test {test.name}: {'ok' if result['rc'] == 0 else 'FAILED rc=' + str(result['rc'])}"
        f" ({result['seconds']}s)")
    return result


def run_tests(img, client=None, uid=None, gid=None, log=print, only=None, cache=None) -> dict:
    """Run img's tests; write build/image_tests/<name>/<key12>/results.json; raise on failure.

    The results are keyed on the image id, the tests and the machine's kind; with a shared
    cache (zoobuild.cache.Cache), results another machine of the same kind recorded for this
    very image are fetched instead of run.  only= runs some tests and records nothing."""
    from images import engine
    from zoobuild.produce import produce

    client = client or engine.client()
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    try:
        image_id = client.images.get(img.tag).id
    except Exception:
        raise UserError(f"{img.tag}: no such image; build it first (`doit images`)")
    if only is not None:
        return _run_all(client, img, image_id, uid, gid, log, only)
    key = test_key(img, image_id, uid, gid)
    out = keys.run_dir("image_tests", img.name, key)

    def build(tmp):
        body = _run_all(client, img, image_id, uid, gid, log, None)
        (tmp / "results.json").write_text(json.dumps(body, indent=1))
        return {"tag": img.tag}

    if produce("image_tests", key, out, build, cache=cache) == "fetched":
        log(f"  {img.name}: tests passed on this image on a machine of this kind; results fetched ({key.short})")
    return json.loads((out / "results.json").read_text())


def _run_all(client, img, image_id, uid, gid, log, only) -> dict:
    results = [run_one(client, img, t, uid, gid, log) for t in img.tests
               if only is None or t.name in only]
    body = {"tag": img.tag, "image_id": image_id, "uid": uid, "gid": gid, "tests": results}
    failed = [r for r in results if r["rc"] != 0]
    if failed:
        first = failed[0]
        last = first["output_tail"].strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"{img.tag}: {len(failed)} image test(s) failed: "
                        f"{', '.join(r['name'] for r in failed)}; {first['name']}: {last[0]}")
    return body


def tests_uptodate(img, uid=None, gid=None):
    """doit uptodate callable: the tests passed on this very image id before."""
    def check(task, values):
        from images import inspection

        image_id = inspection.image_id(img.tag)
        if image_id is None:
            return False
        key = test_key(img, image_id, os.getuid() if uid is None else uid,
                       os.getgid() if gid is None else gid)
        return keys.is_complete(keys.run_dir("image_tests", img.name, key), key)

    return check
