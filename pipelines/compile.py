"""Compile a description with the kfp SDK's own compiler (pure: no engine, no image)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from pipelines import graph


def compile_yaml(desc: graph.Description) -> str:
    """The KFP v2 pipeline YAML of the description.  The caller writes it (atomically), so a
    failure while compiling leaves no file behind."""
    from kfp import compiler

    with tempfile.TemporaryDirectory(prefix="zoobuild-kfp-") as tmp:
        path = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(graph.pipeline_func(desc), str(path))
        return path.read_text()
