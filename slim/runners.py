"""Where a stage runs: a registry of runners, each ``run(command, job, workdir)``.

``local``  runs ``slim.cli``'s command in this process.
``docker`` runs ``python3 -m slim.cli <command>`` inside the model's image with
           the repository (read-only), the data set (read-only) and the build
           directory (read-write) mounted at the same paths, as the caller's
           uid/gid (the image's entrypoint reads LOCAL_USER_ID/LOCAL_GROUP_ID).
"""
import json
import os
from pathlib import Path

from zoobuild import atomic, paths
from zoobuild.errors import UserError


def _write_job(job, workdir):
    return atomic.write_text(Path(workdir) / "job.json", json.dumps(job, indent=1, default=str))


def run_local(command, job, workdir, cluster=None, image=None):
    from slim import cli
    job_file = _write_job(job, workdir)
    argv = [command, "--config", str(job_file)]
    if cluster:
        argv += ["--cluster", str(cluster)]
        if command == "train":
            argv[0] = "launch"
    if cli.main(argv) != 0:
        raise UserError(f"{command} failed (see the line above)")


def docker_mounts(job):
    """Host paths the container needs, mounted at the same path (ro unless build)."""
    mounts = {str(paths.ROOT): "ro", str(paths.BUILD): "rw"}
    for key in ("dataset_dir",):
        if job.get(key):
            mounts.setdefault(str(Path(job[key]).resolve()), "ro")
    ckpt = job.get("cfg", {}).get("checkpoint_path")
    if ckpt:
        p = Path(ckpt).resolve()
        mounts.setdefault(str(p if p.is_dir() else p.parent), "ro")
    for key in ("train_dir", "out"):
        if job.get(key):
            p = Path(job[key]).resolve()
            if not p.is_relative_to(paths.BUILD):
                mounts[str(p.parent if key == "out" else p)] = "rw"
    return {host: {"bind": host, "mode": mode} for host, mode in mounts.items()}


def run_docker(command, job, workdir, cluster=None, echo=print, image=None):
    if cluster:
        raise UserError("runner=docker: distributed training (cluster=) runs with runner=local")
    if not image:   # the doit wiring looks the tag up in the plan it loaded (specs=, image_args=)
        raise UserError(f"runner=docker: no image tag given for model {job['cfg'].get('model')}; "
                        "the caller passes the model image's tag (image=)")
    from images.engine import client as docker_client, run_to_completion
    tag = image
    job_file = _write_job(job, workdir)
    client = docker_client()
    try:
        client.images.get(tag)
    except Exception:
        raise UserError(f"runner=docker: image {tag} is not built; run `doit images`") from None
    status, _ = run_to_completion(
        client, tag, ["python3", "-m", "slim.cli", command, "--config", str(job_file)], echo=echo,
        volumes=docker_mounts(job), working_dir=str(paths.ROOT),
        environment={"LOCAL_USER_ID": str(os.getuid()), "LOCAL_GROUP_ID": str(os.getgid()),
                     "PYTHONPATH": str(paths.ROOT), "ZOOBUILD_BUILD_DIR": str(paths.BUILD),
                     "PYTHONUNBUFFERED": "1"},
        network_mode="none")
    if status != 0:
        raise UserError(f"runner=docker: {command} in {tag} exited with status {status}")


RUNNERS = {"local": run_local, "docker": run_docker}
RUNNER_NAMES = tuple(RUNNERS)


def run(runner, command, job, workdir, cluster=None, image=None):
    """Run one slim.cli command; `image` (runner=docker) is the tag of the image to run in."""
    if runner not in RUNNERS:
        raise UserError(f"runner: unknown {runner!r}; expected one of: {', '.join(RUNNER_NAMES)}")
    RUNNERS[runner](command, job, workdir, cluster=cluster, image=image)
