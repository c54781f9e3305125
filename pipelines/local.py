"""Run a pipeline here: kfp.local (the SDK's own local executor) with its DockerRunner runs
each compiled container component on the project's Docker Engine.

    outputs = run(desc, pipeline_root, {"precision": "int8"})   # stage -> output directory

Before anything runs, every image the pipeline names must be on the engine; a missing one
is one line naming it and the doit task that builds it.  After the run, each stage's output
must hold its completion marker: kfp.local counts a container that was removed before its
exit status could be read as a success, so its verdict alone is not trusted.
"""
from __future__ import annotations

import os
from pathlib import Path

from zoobuild import keys
from zoobuild.errors import UserError

from pipelines import graph


def _build_hint(tag: str) -> str:
    try:
        from images.plan import load_plan

        for img in load_plan().images:
            if img.tag == tag:
                return f"`doit images:{img.name}`"
    except Exception:   # a spec problem must not hide the missing image behind another error
        pass
    return "`doit images`"


def check_images(desc: graph.Description, client) -> None:
    import docker.errors

    for tag in dict.fromkeys(st.image for st in desc.stages):
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            raise UserError(f"image {tag} is not on the Docker Engine ({os.environ.get('DOCKER_HOST', 'default socket')}); "
                            f"build it with {_build_hint(tag)}") from None


def run(desc: graph.Description, pipeline_root, arguments: dict | None = None, client=None,
        caching: bool = True) -> dict:
    """Run the pipeline with kfp.local's DockerRunner; returns stage name -> output directory."""
    from kfp import local

    from images import engine

    client = client or engine.client()
    os.environ["DOCKER_HOST"] = engine.docker_host()   # docker.from_env() inside kfp.local
    check_images(desc, client)
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.DockerRunner(network_mode="none"), pipeline_root=str(root),
               raise_on_error=True, enable_caching=caching, cache_root=str(root / ".kfp_cache"))
    try:
        result = graph.pipeline_func(desc)(**(arguments or {}))
    except RuntimeError as err:   # kfp.local's verdict on a failed task (its log is above)
        raise UserError(str(err).splitlines()[0]) from None
    outputs = {}
    for st in desc.stages:
        artifact = result.outputs[st.name.replace("-", "_")] if hasattr(result, "outputs") else result[st.name]
        path = Path(artifact.path)
        marker = keys.read_marker(path)
        if marker is None:
            raise UserError(f"pipeline {desc.name}: stage {st.name} left no finished output at {path} "
                            f"(its container failed or was removed early; see the log above)")
        outputs[st.name] = path
    return outputs
