"""Two "machines" on this one sharing a cache on a real S3 endpoint (moto's server on loopback).

Machine A runs the job in its own build directory; machine B, in another empty one, runs the
same command.  Reported: both wall times, the stage actions B executed (goal 0: every stage is
fetched), B's time as a fraction of A's (goal <= 0.15 for the non-image stages) and the bytes
moved.  Then one byte of the largest blob is flipped and machine C runs: it must name the
blob, rebuild that stage and replace the entry.

    python bench/cache.py                     # the default model's non-image stages
    python bench/cache.py --with-images       # the whole main job (`doit`), two engine data
                                              # roots, images shared through the local registry
Writes build/bench/cache.json.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["imagenet_tfrecords", "train", "eval", "export", "convert", "benchmark"]
SUMMARY = re.compile(r"cache: (\d+) fetched, (\d+) built, (\d+) uploaded; (\S+ \S+) down, (\S+ \S+) up")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REGISTRY_PORT = str(_free_port())


def run(machine: Path, args, cache_args, log, engine: bool = False):
    env = dict(os.environ, ZOOBUILD_BUILD_DIR=str(machine), ZOOBUILD_PROGRESS="plain")
    if engine:              # a machine of its own: its own dockerd and data root, no image in it,
        env["ZOOBUILD_ENGINE_DIR"] = str(machine / "docker")
        env["ZOOBUILD_REGISTRY_PORT"] = REGISTRY_PORT   # and a registry only this bench has used
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "doit", *args, *cache_args], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t
    (log / f"{machine.name}.log").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        sys.exit(f"bench/cache: machine {machine.name} failed ({res.returncode}); see {log}/{machine.name}.log\n"
                 + "\n".join((res.stdout + res.stderr).strip().splitlines()[-5:]))
    m = SUMMARY.search(res.stderr)
    fetched, built, uploaded, down, up = (int(m[1]), int(m[2]), int(m[3]), m[4], m[5]) if m else (0, 0, 0, "0 B", "0 B")
    return {"wall_s": round(wall, 2), "fetched": fetched, "built": built, "uploaded": uploaded,
            "down": down, "up": up, "stderr_tail": res.stderr.strip().splitlines()[-3:]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--with-images", action="store_true", help="the whole main job, images included")
    ap.add_argument("--workdir", default="", help="where the machines' build dirs go (default: a temp dir)")
    opts = ap.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    creds = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=endpoint, **creds)
    s3.create_bucket(Bucket="zoocache")
    options = {"endpoint_url": endpoint, "key": "bench", "secret": "bench",
               "client_kwargs": {"region_name": "us-east-1"}}
    cache_args = ["cache=s3://zoocache/shared", f"cache_options={json.dumps(options)}"]
    args = [] if opts.with_images else STAGES
    work = Path(opts.workdir or tempfile.mkdtemp(prefix="zoobuild-cache-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        a = run(work / "A", args, cache_args, work, opts.with_images)
        print(f"machine A: {a['wall_s']} s, {a['built']} stages built, {a['uploaded']} uploaded ({a['up']} up)")
        b = run(work / "B", args, cache_args, work, opts.with_images)
        print(f"machine B: {b['wall_s']} s, {b['built']} stage actions executed, {b['fetched']} fetched ({b['down']} down)")
        ratio = b["wall_s"] / a["wall_s"]
        print(f"B/A: {ratio:.3f} (goal <= 0.15{' for the non-image stages' if opts.with_images else ''}); "
              f"B executed {b['built']} stage actions (goal 0)")
        # flip one byte in the largest blob: machine C must report it and rebuild that stage
        objs = s3.list_objects_v2(Bucket="zoocache", Prefix="shared/blobs/")["Contents"]
        victim = max(objs, key=lambda o: o["Size"])
        body = bytearray(s3.get_object(Bucket="zoocache", Key=victim["Key"])["Body"].read())
        body[len(body) // 2] ^= 0x01
        s3.put_object(Bucket="zoocache", Key=victim["Key"], Body=bytes(body))
        c = run(work / "C", args, cache_args, work, opts.with_images)
        sha = victim["Key"].rsplit("/", 1)[-1]
        log_c = (work / "C.log").read_text()
        reported = f"blob {sha[:12]}" in log_c and "corrupt" in log_c
        try:
            gone_or_good = s3.get_object(Bucket="zoocache", Key=victim["Key"])["Body"].read() != bytes(body)
        except s3.exceptions.NoSuchKey:
            gone_or_good = True
        d = run(work / "D", args, cache_args, work, opts.with_images)      # the replaced entry serves again
        fixed = gone_or_good and d["built"] == 0
        print(f"machine C (blob {sha[:12]} corrupted): reported {reported}, rebuilt {c['built']} stage(s), "
              f"{c['wall_s']} s; machine D then fetched {d['fetched']} and built {d['built']}: "
              f"entry replaced {fixed}")
        result = {"with_images": opts.with_images, "command": ["doit", *args], "A": a, "B": b, "C": c, "D": d,
                  "b_over_a": round(ratio, 4), "b_actions": b["built"],
                  "goals": {"b_actions": 0, "b_over_a_max": 0.15},
                  "met": {"b_actions": b["built"] == 0, "b_over_a": ratio <= 0.15},
                  "corruption": {"blob": sha, "reported": reported, "rebuilt": c["built"], "replaced": fixed},
                  "load_avg": os.getloadavg()}
    finally:
        server.stop()
        if opts.with_images:          # the machines' engines and the registry the first one started
            for m in "ABCD":
                subprocess.run(["pkill", "-f", f"dockerd --data-root {work / m / 'docker'}"], check=False)
            subprocess.run(["pkill", "-f", f"docker-registry serve {work}/"], check=False)
    from zoobuild.atomic import write_json

    out = ROOT / "build" / "bench" / "cache.json"
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
