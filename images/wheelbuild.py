"""Build a wheel from a recipe inside a builder container, cached by content key.

A recipe (``images/wheel/recipes/<name>.yml``) says where the source is (a
repo-relative tree or a git URL + ref), which builder image to use (its
Dockerfile and the offline base it starts from), the build script, the
environment, the persistent cache path, the expected output name and the
Python version.  `plan(recipe, target)` reads it and computes the key —
source tree hash + recipe + builder image key + resolved CPU target — without
touching the engine, so a task creator can call it at load time.  `build(plan)`
makes the builder image, runs the script in a container (source read-only at
/src, output at /out, cache at the recipe's cache path; no network unless the
recipe asks), checks the wheel (ABI against the builder's Python, version label),
and files it under ``build/wheels/<recipe>/<target>/<key12>/``.

Import cost: standard library + yaml + tasks/images helpers; docker only inside build().
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from images import cpu
from zoobuild import atomic, keys, paths
from zoobuild.errors import UserError
from zoobuild.fields import check_fields

RECIPE_DIR = paths.ROOT / "images" / "wheel" / "recipes"
DEFAULT_RECIPE = "zoobuild-native"
STAGE = "wheels"
BUILDER_KEY_LABEL = "org.zoobuild.wheel-builder.key"
SELECTED = "selected.json"
BUILD_JSON = "build.json"
LOG = "build.log"

# --- recipe schema ------------------------------------------------------------

_REQUIRED = {"name": str, "source": dict, "builder": dict, "python": str, "build": str, "output": str}
_OPTIONAL = {"description": str, "env": dict, "cache": str, "network": bool, "timeout_s": int,
             "jobs": int, "resources": dict, "targets": list}
_BUILDER_REQUIRED = {"dockerfile": str, "tag": str, "base": str}
_BUILDER_OPTIONAL = {"base_packages": list, "network": bool}
PLACEHOLDERS = ("cflags", "bazel_copts", "label", "target", "required", "python", "jobs")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DEFAULT_SOURCE_EXCLUDE = ("build", "*.egg-info", "__pycache__", ".git", "*.pyc", "*.so")


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    source: dict
    builder: dict
    python: str
    build: str
    output: str
    description: str = ""
    env: dict = field(default_factory=dict)
    cache: str = "/cache"
    network: bool = False
    timeout_s: int = 3600
    jobs: int = 2
    resources: dict = field(default_factory=dict)
    targets: list = field(default_factory=list)

    @property
    def raw_text(self) -> bytes:
        return self.path.read_bytes()


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yml"))


def load_recipe(name_or_path) -> Recipe:
    """Read and validate a recipe by name (images/wheel/recipes/<name>.yml) or path."""
    import yaml

    path = Path(name_or_path)
    if path.suffix not in (".yml", ".yaml"):
        path = RECIPE_DIR / f"{name_or_path}.yml"
        if not path.exists():
            raise UserError(f"recipe={name_or_path!r}: no {path.relative_to(paths.ROOT)}; expected one of "
                            f"{', '.join(recipe_names())}")
    where = str(path.relative_to(paths.ROOT) if path.is_relative_to(paths.ROOT) else path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{where}: cannot read recipe: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of recipe fields, got {type(data).__name__}")
    if isinstance(data.get("python"), (int, float)) and not isinstance(data.get("python"), bool):
        raise UserError(f"{where}: field 'python' is {data['python']!r}; quote it (\"3.11\") so YAML keeps it a string")
    check_fields(data, {**_REQUIRED, **_OPTIONAL}, tuple(_REQUIRED), where=where)
    check_fields(data["builder"], {**_BUILDER_REQUIRED, **_BUILDER_OPTIONAL}, tuple(_BUILDER_REQUIRED),
                 where=f"{where}: builder")
    data = {name: value for name, value in data.items() if value is not None}  # null: the default
    src = data["source"]
    if ("path" in src) == ("git" in src):
        raise UserError(f"{where}: source needs exactly one of 'path' (repo-relative tree) or 'git' (URL, with 'ref')")
    if "git" in src and not src.get("ref"):
        raise UserError(f"{where}: source.git needs a 'ref' (tag or commit) so the build key is stable")
    if "path" in src and not (paths.ROOT / src["path"]).is_dir():
        raise UserError(f"{where}: source.path {src['path']!r} is not a directory under the repo")
    unknown_src = set(src) - {"path", "git", "ref", "exclude"}
    if unknown_src:
        raise UserError(f"{where}: source has unknown field(s) {', '.join(sorted(unknown_src))}; "
                        "expected path | git+ref, exclude")
    if not re.fullmatch(r"3\.\d+", data["python"]):
        raise UserError(f"{where}: field 'python' is {data['python']!r}; expected a version like \"3.11\"")
    if not (paths.ROOT / data["builder"]["dockerfile"]).is_file():
        raise UserError(f"{where}: builder.dockerfile {data['builder']['dockerfile']!r} does not exist")
    for tname in data.get("targets", []):
        if tname not in cpu.TARGET_NAMES:
            raise UserError(f"{where}: targets lists {tname!r}; expected names from {', '.join(cpu.TARGET_NAMES)}")
    for var, value in (data.get("env") or {}).items():
        for ph in _PLACEHOLDER_RE.findall(str(value)):
            if ph not in PLACEHOLDERS:
                raise UserError(f"{where}: env {var} uses {{{ph}}}; expected placeholders "
                                f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    if data["name"] != path.stem:
        raise UserError(f"{where}: name {data['name']!r} must equal the file name {path.stem!r}")
    return Recipe(path=path, **data)


# --- keys ---------------------------------------------------------------------

def _excluded(rel: str, patterns) -> bool:
    parts = rel.split("/")
    for pat in patterns:
        if fnmatch.fnmatch(rel, pat) or any(fnmatch.fnmatch(p, pat) for p in parts):
            return True
    return False


def source_files(root: Path, exclude=()) -> list[Path]:
    patterns = tuple(_DEFAULT_SOURCE_EXCLUDE) + tuple(exclude)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not _excluded(rel_dir + d, patterns))
        out += [Path(dirpath) / f for f in sorted(filenames) if not _excluded(rel_dir + f, patterns)]
    return out


def source_digest(recipe: Recipe) -> str:
    """Content hash of a local source tree (through the hash cache), or url@ref of a git source."""
    src = recipe.source
    if "git" in src:
        return hashlib.sha256(f"git {src['git']} {src['ref']}".encode()).hexdigest()
    root = paths.ROOT / src["path"]
    h = hashlib.sha256()
    for f in source_files(root, src.get("exclude", ())):
        h.update(f"{f.relative_to(root).as_posix()}\0{keys.file_digest(f)}\n".encode())
    return h.hexdigest()


def builder_key(recipe: Recipe) -> str:
    """Key of the builder image: its Dockerfile, its base (ref + package list + base code)."""
    from images.base import base_key

    b = recipe.builder
    dockerfile = paths.ROOT / b["dockerfile"]
    body = {"dockerfile": keys.file_digest(dockerfile), "tag": b["tag"], "base": b["base"],
            "base_key": base_key("bookworm", b.get("base_packages") or ()),
            "code": keys.file_digest(Path(__file__))}
    return hashlib.sha256(keys.canonical(body).encode()).hexdigest()


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    target: cpu.Target
    key: keys.Key
    outdir: Path

    @property
    def builder_key(self) -> str:
        return self.key.inputs["builder"]


def plan(recipe_name: str = DEFAULT_RECIPE, target_name: str = "haswell") -> Plan:
    """Everything about one build that can be known without the engine, including its key."""
    recipe = load_recipe(recipe_name)
    if recipe.targets and target_name not in recipe.targets:
        raise UserError(f"target={target_name!r}: recipe {recipe.name} builds only for "
                        f"{', '.join(recipe.targets)}")
    target = cpu.resolve(target_name)
    key = keys.make_key(
        STAGE,
        entries=["images.wheelbuild"],
        params={"recipe": recipe.name, "target": target.as_dict()},
        inputs={"recipe": keys.file_digest(recipe.path), "source": source_digest(recipe),
                "builder": builder_key(recipe)},
    )
    return Plan(recipe, target, key, keys.run_dir(STAGE, f"{recipe.name}/{target.name}", key))


def substitutions(p: Plan) -> dict:
    t = p.target
    return {"cflags": " ".join(t.cflags), "bazel_copts": " ".join(t.bazel_copts), "label": t.label,
            "target": t.name, "required": " ".join(sorted(t.required)), "python": p.recipe.python,
            "jobs": str(p.recipe.jobs)}


SOURCE_DATE_EPOCH = "315532800"   # 1980-01-01, the earliest time a zip entry can carry


def container_env(p: Plan) -> dict:
    subs = substitutions(p)
    env = {f"ZOOBUILD_{k.upper()}": v for k, v in subs.items()}
    env["ZOOBUILD_ISA_REQUIRED"] = subs["required"]
    # fixed timestamps inside the wheel (bdist_wheel honours it): the same key gives the same
    # bytes, so an image that installs the wheel stays up to date across build directories
    env["SOURCE_DATE_EPOCH"] = SOURCE_DATE_EPOCH
    for var, value in p.recipe.env.items():
        env[var] = _PLACEHOLDER_RE.sub(lambda m: subs[m.group(1)], str(value))
    return env


# --- state --------------------------------------------------------------------

def wheels_dir() -> Path:
    return paths.BUILD / STAGE


def cache_dir(recipe: Recipe) -> Path:
    """Persistent build cache of a recipe (Bazel disk cache for TensorFlow); survives key changes."""
    return paths.BUILD / "wheel-cache" / recipe.name


def wheelhouse_dir() -> Path:
    try:  # the images engineer's wheelhouse module decides where it lives
        from images import wheelhouse

        for name in ("wheelhouse_dir", "WHEELHOUSE"):
            value = getattr(wheelhouse, name, None)
            if value is not None:
                return Path(value() if callable(value) else value)
    except ImportError:
        pass
    return paths.BUILD / "wheelhouse"


def selected_path() -> Path:
    return wheels_dir() / SELECTED


def read_selected() -> dict | None:
    try:
        return json.loads(selected_path().read_text())
    except (OSError, ValueError):
        return None


def finished_wheel(p: Plan) -> Path | None:
    if not keys.is_complete(p.outdir, p.key):
        return None
    marker = keys.read_marker(p.outdir) or {}
    wheel = p.outdir / marker.get("wheel", "")
    return wheel if wheel.is_file() else None


def is_current(p: Plan) -> bool:
    """Built, selected and in the wheelhouse: `doit build_wheel` has nothing to do."""
    wheel = finished_wheel(p)
    sel = read_selected()
    return (wheel is not None and sel is not None and sel.get("key") == p.key.hex
            and (wheelhouse_dir() / wheel.name).is_file())


def select(p: Plan, log=print) -> dict:
    """Copy the finished wheel into the wheelhouse and record it in build/wheels/selected.json."""
    wheel = finished_wheel(p)
    if wheel is None:
        raise UserError(f"{p.outdir}: no finished build of {p.recipe.name} for target {p.target.name}")
    info = json.loads((p.outdir / BUILD_JSON).read_text())
    house = wheelhouse_dir()
    house.mkdir(parents=True, exist_ok=True)
    dest = house / wheel.name
    if not dest.exists() or keys.file_digest(dest) != info["sha256"]:
        atomic.copy_file(wheel, dest)
    dist = info["requirement"].split("==")[0]
    body = {"wheel": str(wheel), "wheelhouse": str(dest), "target": p.target.name,
            "dist": dist, "replaces": STOCK_DIST if dist == STOCK_DIST else None,
            "label": p.target.label, "tags": info["tags"], "requirement": info["requirement"],
            "required_isa": sorted(p.target.required), "sha256": info["sha256"],
            "recipe": p.recipe.name, "key": p.key.hex, "kind": "compiled"}
    atomic.write_json(selected_path(), body)
    log(f"selected {wheel.name} (target {p.target.name}) -> {selected_path()}")
    return body


# --- the builder image and the build -------------------------------------------

def ensure_builder(client, recipe: Recipe, log=print) -> str:
    """Make the recipe's builder image exist with the current builder key; return its tag."""
    import docker.errors

    from images.base import ensure_base_image

    b = recipe.builder
    key = builder_key(recipe)
    try:
        img = client.images.get(b["tag"])
        if (img.labels or {}).get(BUILDER_KEY_LABEL) == key:
            return b["tag"]
    except docker.errors.ImageNotFound:
        pass
    packages = tuple(b.get("base_packages") or ())
    how = ensure_base_image(client, b["base"], packages=packages, log=log) if packages else \
        ensure_base_image(client, b["base"], log=log)
    log(f"builder base {b['base']}: {how}; building {b['tag']}")
    dockerfile = paths.ROOT / b["dockerfile"]
    try:
        client.images.build(
            path=str(dockerfile.parent), dockerfile=dockerfile.name, tag=b["tag"],
            buildargs={"BASE": b["base"]}, labels={BUILDER_KEY_LABEL: key}, rm=True, forcerm=True,
            pull=False, network_mode=None if b.get("network") else "none")
    except docker.errors.BuildError as err:
        lines = [str(x.get("stream", x.get("error", ""))).strip() for x in err.build_log]
        lines = [x for x in lines if x]
        raise UserError(f"builder image {b['tag']} ({b['dockerfile']}) failed: "
                        f"{lines[-1] if lines else err.msg}") from None
    return b["tag"]


def fetch_source(recipe: Recipe, log=print) -> Path:
    """Local tree, or a shallow git checkout of url@ref under build/wheel-src/ (needs network)."""
    src = recipe.source
    if "path" in src:
        return paths.ROOT / src["path"]
    dest = paths.BUILD / "wheel-src" / recipe.name / re.sub(r"[^A-Za-z0-9._-]", "_", src["ref"])
    if (dest / ".git").is_dir():
        return dest
    log(f"git clone {src['git']} @ {src['ref']}")
    with atomic.atomic_dir(dest) as tmp:   # a failed clone leaves nothing behind
        res = subprocess.run(["git", "clone", "--depth", "1", "--branch", src["ref"], src["git"],
                              str(tmp)], capture_output=True, text=True)
        if res.returncode != 0:
            last = res.stderr.strip().splitlines()[-1:] or ["(no output)"]
            raise UserError(f"{recipe.path.name}: git clone {src['git']} @ {src['ref']} failed: {last[0]}")
    return dest


def _run_container(client, image: str, p: Plan, src: Path, out: Path, logfile: Path, log) -> int:
    cache = cache_dir(p.recipe)
    cache.mkdir(parents=True, exist_ok=True)
    volumes = {str(src): {"bind": "/src", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"},
               str(cache): {"bind": p.recipe.cache, "mode": "rw"}}
    container = client.containers.run(
        image, ["sh", "-ec", p.recipe.build], environment=container_env(p), volumes=volumes,
        network_mode=None if p.recipe.network else "none", detach=True,
        labels={"org.zoobuild.wheel-build": p.key.short}, working_dir="/work")
    try:
        pending = b""
        with open(logfile, "wb") as f:  # the whole log to build.log, each line as progress
            for chunk in container.logs(stream=True, follow=True):
                f.write(chunk)
                f.flush()
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    log(f"  | {line.decode(errors='replace').rstrip()}")
        if pending:
            log(f"  | {pending.decode(errors='replace').rstrip()}")
        result = container.wait(timeout=p.recipe.timeout_s)
        return int(result.get("StatusCode", 1))
    finally:
        try:
            container.remove(force=True)
        except Exception:
            pass


def build(p: Plan, client=None, log=print, select_it: bool = True, cache=None) -> Path:
    """Build the plan's wheel unless a finished build of its key exists here or in the shared
    cache (zoobuild.cache.Cache: fetched, verified, not built); select it; return it.

    select_it=False (benchmarks) leaves build/wheels/selected.json and the wheelhouse alone."""
    from zoobuild.produce import produce

    wheel = finished_wheel(p)
    if wheel is not None:
        log(f"{p.recipe.name} for {p.target.name}: cached {wheel.name} ({p.key.short})")
        if select_it:
            select(p, log=log)
        return wheel
    made = {}

    def build_into(tmp: Path) -> dict:
        made.update(_build_in_container(p, client, tmp, log))
        return {"wheel": made["wheel"]}

    how = produce(STAGE, p.key, p.outdir, build_into, cache=cache)
    wheel = finished_wheel(p)
    if how == "fetched":
        log(f"{p.recipe.name} for {p.target.name}: fetched {wheel.name} ({p.key.short}) from the shared cache")
    else:
        log(f"built {wheel.name} in {made['seconds']} s")
    if select_it:
        select(p, log=log)
    return wheel


def _build_in_container(p: Plan, client, tmp: Path, log) -> dict:
    """Run the recipe in its builder container; the wheel and build.json land in tmp."""
    from images import abi

    if client is None:
        from images.engine import client as engine_client

        client = engine_client()
    image = ensure_builder(client, p.recipe, log=log)
    image_tags = abi.image_tags(client, image)
    if image_tags.python != p.recipe.python:
        raise UserError(f"{p.recipe.path.name}: python is {p.recipe.python!r} but builder {image} runs "
                        f"Python {image_tags.python}; change the recipe or the builder base")
    src = fetch_source(p.recipe, log=log)
    t0 = time.monotonic()
    log(f"building {p.recipe.name} for target {p.target.name} ({' '.join(p.target.cflags)}) in {image}")
    out = tmp / "out"
    out.mkdir()
    logfile = tmp / LOG
    status = _run_container(client, image, p, src, out, logfile, log)
    if status != 0:
        tail = logfile.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        kept = wheels_dir() / "failed" / f"{p.recipe.name}-{p.target.name}-{p.key.short}.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(logfile, kept)
        raise UserError(f"build of {p.recipe.name} for {p.target.name} exited {status}: {tail[0]} "
                        f"(log: {kept})")
    found = sorted(x for x in out.iterdir() if fnmatch.fnmatch(x.name, p.recipe.output))
    if len(found) != 1:
        raise UserError(f"{p.recipe.path.name}: expected one wheel matching {p.recipe.output!r} in "
                        f"/out, found {[x.name for x in out.iterdir()] or 'none'}")
    wheel = tmp / found[0].name
    os.replace(found[0], wheel)
    shutil.rmtree(out)
    tags = abi.wheel_tags(wheel)
    abi.check_wheel_tags(wheel, image_tags)  # the builder's own Python must accept it
    version = abi.wheel_version(wheel)
    if version.local != p.target.label:
        raise UserError(f"{wheel.name}: local version label is {version.local!r}; the recipe must "
                        f"give the wheel +{p.target.label} for target {p.target.name}")
    dist = wheel.name.split("-")[0]
    info = {"wheel": wheel.name, "sha256": keys.file_digest(wheel), "tags": sorted(tags),
            "requirement": f"{dist.replace('_', '-')}=={version}", "target": p.target.as_dict(),
            "recipe": p.recipe.name, "builder": image, "builder_key": p.builder_key,
            "python": image_tags.python, "seconds": round(time.monotonic() - t0, 2)}
    (tmp / BUILD_JSON).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return info


# --- wheel=stock ----------------------------------------------------------------

STOCK_DIST = "tensorflow-cpu"


def stock_requirement() -> str:
    """The pinned tensorflow-cpu requirement from requirements.lock."""
    lock = paths.ROOT / "requirements.lock"
    m = re.search(rf"^{re.escape(STOCK_DIST)}==(\S+)", lock.read_text(), re.M) if lock.exists() else None
    if not m:
        raise UserError(f"requirements.lock: no {STOCK_DIST}==<version> pin; wheel=stock needs one")
    return f"{STOCK_DIST}=={m.group(1)}"


def select_stock(log=print) -> str:
    """wheel=stock: no compiled wheel is selected, so the images install the pinned tensorflow-cpu.

    The wheelhouse reads the absence of selected.json as "use the PyPI pin"."""
    req = stock_requirement()
    selected_path().unlink(missing_ok=True)
    log(f"selected stock {req} (the pinned wheel the wheelhouse downloads); "
        f"removed {selected_path().name}")
    return req
