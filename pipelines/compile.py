"""Compile a description with the kfp SDK's own compiler and write the YAML atomically."""
from __future__ import annotations

import tempfile
from pathlib import Path

from zoobuild import atomic

from pipelines import graph


def compile_yaml(desc: graph.Description) -> str:
    """The KFP v2 pipeline YAML of the description (pure: no engine, no image needed)."""
    from kfp import compiler

    with tempfile.TemporaryDirectory(prefix="zoobuild-kfp-") as tmp:
        path = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(graph.pipeline_func(desc), str(path))
        return path.read_text()


def write(desc: graph.Description, out: Path) -> Path:
    """Compile, then write out only once the whole YAML exists (never a partial file)."""
    text = compile_yaml(desc)
    atomic.write_text(out, text)
    return out


def executors(yaml_text: str) -> dict:
    """executor name -> container spec of a compiled pipeline (for checks and the README)."""
    import yaml

    docs = [d for d in yaml.safe_load_all(yaml_text) if d]
    spec = docs[0]
    return {name: ex["container"] for name, ex in spec["deploymentSpec"]["executors"].items()}
