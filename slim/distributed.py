"""Parameter-server training on TensorFlow's gRPC runtime.

Cluster description (JSON or YAML), one address per task:

    {"ps": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222", "10.0.0.3:2222"]}

On several machines run, on each host, the process for its task:

    python -m slim.cli train --config job.json --cluster cluster.json --job ps --task 0
    python -m slim.cli train --config job.json --cluster cluster.json --job worker --task 0
    ...

``launch_local`` starts every task of a (loopback) cluster as a local process,
waits for the workers, then stops the parameter servers.
"""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from zoobuild.errors import UserError


def load_cluster(path):
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"cluster: cannot read {path}: {err.strerror}") from None
    if path.suffix in (".yml", ".yaml"):
        import yaml
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" at line {where.line + 1}" if where is not None else ""
            raise UserError(f"cluster: {path} is not valid YAML{at}: "
                            f"{getattr(err, 'problem', None) or err}; expected ps/worker lists "
                            "of host:port") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as err:
            raise UserError(f"cluster: {path} is not valid JSON: {err}; expected ps/worker "
                            "lists of host:port") from None
    return validate_cluster(data, str(path))


def validate_cluster(data, where="cluster"):
    if not isinstance(data, dict) or not data.get("worker"):
        raise UserError(f"{where}: expected a mapping with a non-empty 'worker' list "
                        "(and optionally 'ps') of host:port strings")
    for job, addrs in data.items():
        if job not in ("ps", "worker"):
            raise UserError(f"{where}: job {job!r}: expected 'ps' or 'worker'")
        if not isinstance(addrs, list):
            raise UserError(f"{where}: {job}: expected a list of host:port")
        for addr in addrs:
            host, _, port = str(addr).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise UserError(f"{where}: {job}: {addr!r}: expected host:port")
    return {job: [str(a) for a in addrs] for job, addrs in data.items()}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_cluster(num_ps=1, num_workers=2):
    return {"ps": [f"localhost:{free_port()}" for _ in range(num_ps)],
            "worker": [f"localhost:{free_port()}" for _ in range(num_workers)]}


def launch_local(cfg, dataset_dir, train_dir, cluster, timeout=None, echo=print):
    """Run every task of ``cluster`` as a local process; returns the chief's train.json."""
    cluster = validate_cluster(cluster)
    train_dir = Path(train_dir)
    logs = train_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    job_file = train_dir / "job.json"
    job_file.write_text(json.dumps({"cfg": cfg, "dataset_dir": str(dataset_dir),
                                    "train_dir": str(train_dir)}))
    cluster_file = train_dir / "cluster.json"
    cluster_file.write_text(json.dumps(cluster))
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    procs = {}
    try:
        for job in ("ps", "worker"):
            for i in range(len(cluster.get(job, []))):
                log = open(logs / f"{job}{i}.log", "w")
                procs[(job, i)] = (subprocess.Popen(
                    [sys.executable, "-m", "slim.cli", "train", "--config", str(job_file),
                     "--cluster", str(cluster_file), "--job", job, "--task", str(i)],
                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root), log)
        echo(f"launched {len(cluster.get('ps', []))} ps + {len(cluster['worker'])} workers; "
             f"logs in {logs}")
        deadline = None if timeout is None else time.time() + timeout
        workers = [p for (job, _), (p, _) in procs.items() if job == "worker"]
        while any(p.poll() is None for p in workers):
            if deadline and time.time() > deadline:
                raise UserError(f"distributed training exceeded {timeout}s; logs in {logs}")
            for (job, i), (p, _) in procs.items():
                if p.poll() not in (None, 0):
                    raise UserError(f"{job} {i} exited with status {p.returncode}; "
                                    f"see {logs / f'{job}{i}.log'}")
            time.sleep(0.5)
    finally:
        for (job, i), (p, log) in procs.items():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            log.close()
    result = train_dir / "train.json"
    if not result.exists():
        raise UserError(f"distributed training finished without {result}; logs in {logs}")
    return json.loads(result.read_text())
