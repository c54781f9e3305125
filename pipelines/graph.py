"""A pipeline description (plain data from the doit wiring) -> kfp container components and
a pipeline function the kfp compiler and kfp.local both take.

Every stage becomes one container component in its own image running
`python -m slim.stage STAGE --job JSON --key HEX [--param NAME VALUE]... [--input NAME PATH]...
--out PATH`.  The job JSON and the compiled key are constant inputs of the task, so KFP's
execution cache hits exactly when our key does; the typed variables are pipeline parameters
wired to the stages that read them.  A stage with `fan_out` (shard ranges) runs once per
range under dsl.ParallelFor and a join stage receives the collected outputs.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import NamedTuple

ENTRY = ["python3", "-m", "slim.stage"]
_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list}


@dataclass
class Param:
    name: str
    type: str           # str | int | float | bool | list
    default: object
    help: str = ""


@dataclass
class Stage:
    name: str                                  # component name (KFP task name)
    command: str                               # slim.stage command
    image: str                                 # image reference
    key: dict                                  # key parts {stage, code, params, inputs} + "hex"
    job: dict = field(default_factory=dict)    # constant job fields for the entry point
    params: dict = field(default_factory=dict)  # pipeline parameter -> key param it sets
    inputs: dict = field(default_factory=dict)  # input name -> upstream stage name
    cpu: str = "1"
    memory: str = "2G"
    fan_out: list = field(default_factory=list)  # shard ranges "lo:hi": one task per range
    join: str = ""                             # with fan_out: the command joining the parts


@dataclass
class Description:
    name: str                                  # pipeline name, e.g. zoobuild-main
    description: str
    params: list                               # [Param]
    stages: list                               # [Stage], upstream first


def _signature(values: dict, artifacts: list, list_artifacts: list = ()) -> inspect.Signature:
    from kfp.dsl import Artifact, Input, Output

    P = inspect.Parameter
    out = [P(n, P.POSITIONAL_OR_KEYWORD, annotation=t) for n, t in values.items()]
    out += [P(a, P.POSITIONAL_OR_KEYWORD, annotation=Input[Artifact]) for a in artifacts]
    out += [P(a, P.POSITIONAL_OR_KEYWORD, annotation=Input[list[Artifact]]) for a in list_artifacts]
    out.append(P("out", P.POSITIONAL_OR_KEYWORD, annotation=Output[Artifact]))
    return inspect.Signature(out)


def component(name: str, command: str, image: str, values: dict, artifacts=(), list_artifacts=()):
    """A container component: `values` name -> python type, artifacts are input directories."""
    from kfp import dsl

    sig = _signature(values, list(artifacts), list(list_artifacts))

    def spec(*args, **kwargs):
        bound = sig.bind(*args, **kwargs).arguments
        argv = [command, "--job", bound["job"], "--key", bound["key"]]
        for n in values:
            if n not in ("job", "key"):
                argv += ["--param", n, bound[n]]
        for a in artifacts:
            argv += ["--input", a, bound[a].path]
        for a in list_artifacts:   # a list of artifacts has no path placeholder: read it from
            argv += ["--input-list", a, "{{$}}"]   # the executor input (kfp.local resolves only this)
        # the output directory, and the ExecutorOutput file through which a container component
        # reports its output artifact (kfp.local reads only that; the KFP launcher reads it too)
        argv += ["--out", bound["out"].path, "--out-uri", bound["out"].uri,
                 "--executor-output", "{{$.outputs.output_file}}"]
        return dsl.ContainerSpec(image=image, command=list(ENTRY), args=argv)

    spec.__signature__ = sig
    spec.__name__ = name.replace("-", "_")
    spec.__doc__ = f"zoobuild stage {command} in {image}"
    return dsl.container_component(spec)


def _values(stage: Stage, params: dict) -> dict:
    vals = {"job": str, "key": str}
    for p in stage.params:
        vals[p] = _TYPES[params[p].type]
    return vals


def _resources(task, stage: Stage):
    return task.set_cpu_request(stage.cpu).set_memory_request(stage.memory).set_display_name(stage.name)


def pipeline_func(desc: Description):
    """The kfp pipeline (a GraphComponent) for the description."""
    from kfp import dsl

    params = {p.name: p for p in desc.params}
    P = inspect.Parameter
    # the pipeline's outputs: every stage's output directory, so a run hands back where each is
    outputs_type = NamedTuple("Outputs", [(st.name.replace("-", "_"), dsl.Artifact) for st in desc.stages])
    sig = inspect.Signature([P(p.name, P.POSITIONAL_OR_KEYWORD, annotation=_TYPES[p.type], default=p.default)
                             for p in desc.params], return_annotation=outputs_type)

    def body(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        outputs = {}
        for st in desc.stages:
            job = json.dumps({**st.job, "key_parts": st.key, "param_map": {**st.params, **st.job.get("param_map", {})},
                              "param_types": {p: params[p].type for p in st.params}}, sort_keys=True)
            kwargs = {"job": job, "key": st.key["hex"], **{p: given[p] for p in st.params}}
            kwargs.update({name: outputs[up] for name, up in st.inputs.items()})
            if st.fan_out:
                part = component(f"{st.name}-part", st.command, st.image, {**_values(st, params), "shard_range": str},
                                 st.inputs)
                with dsl.ParallelFor(items=list(st.fan_out), name=f"{st.name}-shards") as rng:
                    t = _resources(part(shard_range=rng, **kwargs), st)
                    t.set_display_name(f"{st.name}-part")
                join = component(st.name, st.join, st.image, _values(st, params), st.inputs, ["parts"])
                task = _resources(join(parts=dsl.Collected(t.outputs["out"]), **kwargs), st)
            else:
                comp = component(st.name, st.command, st.image, _values(st, params), st.inputs)
                task = _resources(comp(**kwargs), st)
            outputs[st.name] = task.outputs["out"]
        return outputs_type(*(outputs[st.name] for st in desc.stages))

    body.__signature__ = sig
    body.__name__ = desc.name.replace("-", "_")
    body.__doc__ = desc.description
    return dsl.pipeline(name=desc.name, description=desc.description)(body)
