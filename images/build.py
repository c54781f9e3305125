"""Build the images a spec set describes, through docker-py, each only when stale.

An image's key (zoobuild/keys.py) covers: this module's source, its tag, its generated
Dockerfile text and build args, the id of the image it is FROM (so a rebuilt parent makes
its children stale), and the content of its build context (files, wheels, .debs,
downloads, the model package's content key).  The image carries the key as the label
`org.zoobuild.key`; it is up to date when an image with its tag exists and carries it.

Each image is built from a minimal context: its Dockerfile, its slice's files, the wheels
of its own requirements (not its parents'), and its model package.  Builds run with
network_mode='none'.  `build/images.json` records tag -> id, key, parent.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from images import assemble, spec as spec_mod
from zoobuild import keys, paths, records
from zoobuild import gitrev
from zoobuild.errors import UserError

KEY_LABEL = "org.zoobuild.key"
ENTRIES = ("images.build",)  # the key's code: this module's computed import closure


# --- the spec set being built -------------------------------------------------------------

@dataclass
class Plan:
    spec: spec_mod.Spec
    images: list
    cli_args: dict
    # a dict makes package keys computed once per plan: for one doit run (a snapshot of the
    # tree), not for library users who change files between calls
    memo: dict | None = None

    @property
    def by_tag(self) -> dict:
        return {i.tag: i for i in self.images}

    @property
    def by_name(self) -> dict:
        return {i.name: i for i in self.images}

    def ancestors(self, img) -> list:
        out, tags = [], self.by_tag
        while img.parent is not None:
            img = tags[img.parent]
            out.append(img)
        return out


def load_plan(spec_dir=None, partials_dir=None, root=None, cli_args=None) -> Plan:
    """Load and expand a spec set.  A spec directory with a sibling `partials/` directory is a
    self-contained set rooted at its parent (tests, benchmarks); otherwise the root is the
    repository and the partials are images/partials."""
    spec_dir = Path(spec_dir) if spec_dir else paths.ROOT / "specs"
    if not spec_dir.is_absolute():
        spec_dir = (Path(root) if root else paths.ROOT) / spec_dir
    if root is None:
        own = (spec_dir.resolve().parent / "partials").is_dir()
        root = spec_dir.resolve().parent if own else paths.ROOT
        if own and partials_dir is None:
            partials_dir = root / "partials"
    root = Path(root)
    spec = spec_mod.load(spec_dir, partials_dir, root=root)
    cli = cli_args if isinstance(cli_args, dict) else assemble.parse_cli_args(cli_args)
    return Plan(spec, assemble.expand(spec, cli), cli)


def model_image_tag(model: str, precision: str = "fp32", mode: str = "training", plan=None) -> str:
    """The tag of the model image for (model, precision, mode), from the shipped specs."""
    plan = plan or load_plan()
    for img in plan.images:
        a = img.args
        if img.slice.package is not None and a.get("MODEL_NAME") == model \
                and a.get("PRECISION", "fp32") == precision and a.get("MODE", "training") == mode:
            return img.tag
    known = sorted({(i.args.get("MODEL_NAME"), i.args.get("PRECISION"), i.args.get("MODE"))
                    for i in plan.images if i.slice.package is not None})
    raise UserError(f"no model image for model={model} precision={precision} mode={mode}; "
                    f"specs define {', '.join('/'.join(map(str, k)) for k in known)}")


# --- requirements per image ---------------------------------------------------------------

def image_requirements(plan: Plan, img) -> list[str]:
    """Normalized names this image installs: its slice's closure minus its ancestors'."""
    if not img.slice.requirements:
        return []
    from images import wheelhouse

    inherited = [r for a in plan.ancestors(img) for r in a.slice.requirements]
    names = wheelhouse.closure(img.slice.requirements, exclude=inherited)
    if wheelhouse.TF_NAME in names:  # the hook of `doit build_wheel`: its extra compiled wheel
        names += [n for n in wheelhouse.compiled_extras() if n not in names]
    return names


def wheelhouse_needs(plan: Plan) -> tuple[list, list]:
    reqs = sorted({r for i in plan.images for r in i.slice.requirements})
    debs = sorted({d for i in plan.images for d in i.slice.debs})
    return reqs, debs


def wheelhouse_dir() -> Path:
    return paths.BUILD / "wheelhouse"


# --- model packages -----------------------------------------------------------------------

def package_entries(plan: Plan, img):
    from images import package

    pkg = img.slice.package
    files = [(f.source, f.destination) for f in pkg.files]
    return package.collect(files, plan.spec.root, {"model.json": package.model_json(pkg.name, img.args)})


def package_key(plan: Plan, img) -> keys.Key:
    """The package's key: the content of what goes in (walked through the hash cache)."""
    from images import package

    if plan.memo is not None and ("package", img.tag) in plan.memo:
        return plan.memo[("package", img.tag)]
    key = keys.make_key("package", entries=["images.package"], params={"name": img.slice.package.name},
                        inputs={"content": package.content_digest(package_entries(plan, img))})
    if plan.memo is not None:
        plan.memo[("package", img.tag)] = key
    return key


def package_path(plan: Plan, img, key=None) -> Path:
    key = key or package_key(plan, img)
    name = img.slice.package.name
    return keys.run_dir("packages", name, key) / f"{name}.tar.gz"


def ensure_package(plan: Plan, img, log=print) -> Path:
    """Build the model package of img (once per content key) and return its path."""
    from images import package

    entries = package_entries(plan, img)
    key = keys.make_key("package", entries=["images.package"], params={"name": img.slice.package.name},
                        inputs={"content": package.content_digest(entries)})
    out = keys.run_dir("packages", img.slice.package.name, key)
    path = out / f"{img.slice.package.name}.tar.gz"
    if keys.is_complete(out, key):
        return path
    with keys.atomic_dir(out) as tmp:
        package.write(img.slice.package.name, entries, tmp / path.name)
        sha = hashlib.sha256((tmp / path.name).read_bytes()).hexdigest()
        keys.mark_complete(tmp, key, {"sha256": sha, "entries": len(entries)})
    log(f"package {img.slice.package.name}: {path} ({len(entries)} entries)")
    return path


# --- keys ---------------------------------------------------------------------------------

def context_inputs(plan: Plan, img) -> dict:
    """Content digests of everything the image's build context holds (besides the Dockerfile)."""
    root = plan.spec.root
    inputs = {}
    for f in img.slice.files:
        inputs[f"file:{f.destination}"] = keys.tree_digest(root / f.source)
    for d in img.slice.downloads:
        inputs[f"download:{d.destination}"] = d.sha256
    reqs = image_requirements(plan, img)
    if reqs or img.slice.debs:
        from images import wheelhouse

        index = wheelhouse.read_index(wheelhouse_dir())
        for r in reqs:
            entry = index["wheels"].get(r)
            if entry is None:
                raise UserError(f"wheelhouse has no wheel for {r}: run `doit wheelhouse`")
            inputs[f"wheel:{r}"] = entry["sha256"]
        for d in img.slice.debs:
            entry = index["debs"].get(d)
            if entry is None:
                raise UserError(f"wheelhouse has no .deb for {d}: run `doit wheelhouse`")
            inputs[f"deb:{d}"] = entry["sha256"]
    if img.slice.package is not None:
        inputs["package"] = package_key(plan, img).hex
    return inputs


def image_key(plan: Plan, img, from_id: str) -> keys.Key:
    return keys.make_key("image", entries=ENTRIES,
                         params={"tag": img.tag, "dockerfile": img.dockerfile,
                                 "build_args": img.build_args},
                         inputs={"from": from_id, **context_inputs(plan, img)})


# --- a fast look at the engine (no docker-py import: a no-op run must stay cheap) ----------

class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=5):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


_SEEN: dict = {}
_NO_ENGINE = object()


def engine_image(ref: str):
    """(id, labels) of the image `ref`, None when absent, _NO_ENGINE when no engine answers.

    One inspect request over the engine's socket (~2 ms; listing all images costs ~0.3 s).
    Answers are remembered per process until build/images.json changes: every build records
    there before its task ends, so a check made after a (parallel) build never sees stale ids.
    """
    try:
        stamp = ((paths.BUILD / "images.json").stat().st_mtime_ns, str(paths.BUILD))
    except OSError:
        stamp = (None, str(paths.BUILD))
    if _SEEN.get("stamp") != stamp:
        _SEEN.clear()
        _SEEN["stamp"] = stamp
    if ref not in _SEEN:
        _SEEN[ref] = _inspect(ref)
    return _SEEN[ref]


def _inspect(ref: str):
    from images import engine

    candidates = []
    if os.environ.get("DOCKER_HOST"):
        candidates.append(os.environ["DOCKER_HOST"])
    else:
        candidates += ["unix:///var/run/docker.sock", f"unix://{engine.socket_path()}"]
    for host in candidates:
        url = urllib.parse.urlparse(host)
        try:
            if url.scheme == "unix":
                if not os.path.exists(url.path):
                    continue
                conn = _UnixConnection(url.path)
            elif url.scheme in ("tcp", "http"):
                conn = http.client.HTTPConnection(url.hostname, url.port or 2375, timeout=5)
            else:
                continue
            conn.request("GET", f"/images/{urllib.parse.quote(ref, safe=':/@')}/json")
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            if resp.status == 404:
                return None
            if resp.status != 200:
                continue
            item = json.loads(body)
            return item["Id"], (item.get("Config") or {}).get("Labels") or {}
        except OSError:
            continue
    return _NO_ENGINE


def _ref(tag: str) -> str:
    return tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"


def is_uptodate(plan: Plan, img, record: bool = False) -> bool:
    """True when an image with img's tag exists and carries img's current key.

    record=True also writes img's entry into build/images.json when it is missing there
    (an image built under another build directory, or before the records were kept)."""
    parent = engine_image(_ref(img.base_image))
    current = engine_image(_ref(img.tag))
    if parent in (None, _NO_ENGINE) or current in (None, _NO_ENGINE):
        return False
    try:
        key = image_key(plan, img, parent[0])
    except UserError:
        return False
    ok = current[1].get(KEY_LABEL) == key.hex
    if ok and record and read_records().get(img.tag, {}).get("id") != current[0]:
        _record(img.tag, _entry(plan, img, current[0], key, parent[0], None))
    return ok


# --- building -----------------------------------------------------------------------------

def _git_revision(root: Path) -> str:
    return gitrev.label(root)


def _link_or_copy(src: Path, dst: Path):
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def prepare_context(plan: Plan, img, dest: Path, log=print) -> dict:
    """Fill dest with exactly what img's Dockerfile uses; return a summary of its files."""
    root = plan.spec.root
    (dest / "Dockerfile").write_text(img.dockerfile)
    summary = {"files": [], "wheels": [], "debs": [], "package": None}
    for f in img.slice.files:
        src = root / f.source
        if src.is_dir():
            shutil.copytree(src, dest / f.destination, dirs_exist_ok=True)
        else:
            _link_or_copy(src, dest / f.destination)
        summary["files"].append(f.destination)
    for d in img.slice.downloads:
        _link_or_copy(fetch_download(d), dest / d.destination)
        summary["files"].append(d.destination)
    reqs = image_requirements(plan, img)
    if reqs or img.slice.debs:
        from images import wheelhouse

        index = wheelhouse.read_index(wheelhouse_dir())
        wh = dest / "wheelhouse"
        wh.mkdir()
        for r in reqs:
            _link_or_copy(wheelhouse_dir() / index["wheels"][r]["file"], wh / index["wheels"][r]["file"])
            summary["wheels"].append(index["wheels"][r]["file"])
        for d in img.slice.debs:
            _link_or_copy(wheelhouse_dir() / index["debs"][d]["file"], wh / index["debs"][d]["file"])
            summary["debs"].append(index["debs"][d]["file"])
        (wh / "requirements.txt").write_text(wheelhouse.requirements_text(reqs, index) if reqs else "")
    if img.slice.package is not None:
        pkg = ensure_package(plan, img, log)
        _link_or_copy(pkg, dest / "packages" / pkg.name)
        summary["package"] = pkg.name
    return summary


def fetch_download(d) -> Path:
    """A spec'd download, cached under build/downloads/<sha256>, checked against its sha256."""
    import urllib.request

    out = paths.BUILD / "downloads" / d.sha256
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp-{os.getpid()}")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(d.source, timeout=60) as resp, open(tmp, "wb") as f:
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{d.where}: downloads.source {d.source}: {err}")
    if h.hexdigest() != d.sha256:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{d.where}: downloads.sha256: {d.source} has sha256 {h.hexdigest()}, "
                        f"spec says {d.sha256}")
    os.replace(tmp, out)
    return out


def labels_for(plan: Plan, img, key: keys.Key, from_id: str) -> dict:
    repo, _, tag = _ref(img.tag).rpartition(":")
    return {
        KEY_LABEL: key.hex,
        "org.zoobuild.spec": ",".join(img.spec_files),
        "org.zoobuild.slice": f"{img.slice.set_name}[{img.slice.index}]",
        "org.zoobuild.partials": ",".join(img.slice.partials),
        "org.zoobuild.parent": img.base_image,
        "org.opencontainers.image.title": img.name,
        "org.opencontainers.image.ref.name": tag,
        "org.opencontainers.image.revision": _git_revision(plan.spec.root),
        "org.opencontainers.image.base.name": img.base_image,
        "org.opencontainers.image.base.digest": from_id,
        "org.opencontainers.image.description": f"{img.tag} from {img.dockerfile_path}",
    }


def _record(entry_tag: str, entry: dict) -> None:
    records.update_json(paths.BUILD / "images.json", entry_tag, entry)


def read_records() -> dict:
    return records.read_json(paths.BUILD / "images.json")


def _image_id(client, ref: str) -> str | None:
    import docker.errors

    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def context_summary(plan: Plan, img) -> dict:
    """What prepare_context puts into img's build context, by name."""
    summary = {"files": [f.destination for f in img.slice.files] +
               [d.destination for d in img.slice.downloads], "wheels": [], "debs": [], "package": None}
    reqs = image_requirements(plan, img)
    if reqs or img.slice.debs:
        from images import wheelhouse

        index = wheelhouse.read_index(wheelhouse_dir())
        summary["wheels"] = [index["wheels"][r]["file"] for r in reqs]
        summary["debs"] = [index["debs"][d]["file"] for d in img.slice.debs]
    if img.slice.package is not None:
        summary["package"] = f"{img.slice.package.name}.tar.gz"
    return summary


def _entry(plan, img, image_id, key, from_id, seconds) -> dict:
    return {"id": image_id, "key": key.hex, "parent": img.parent, "from": img.base_image,
            "from_id": from_id, "name": img.name, "dockerfile": img.dockerfile_path,
            "context": context_summary(plan, img), "build_seconds": seconds}


def installs_selected_wheel(plan: Plan, img) -> bool:
    """True when img installs the wheel `doit build_wheel` selected (build/wheels/selected.json):
    the image whose own requirements hold tensorflow-cpu (tf-compiled-base)."""
    from images import wheelhouse

    return wheelhouse.selected_wheel_file().exists() and wheelhouse.TF_NAME in image_requirements(plan, img)


def check_selected_wheel(plan: Plan, img, client) -> None:
    """ABI (and ISA) check of the selected compiled wheel against the Python of the image img is
    built FROM, before anything of img is built: a wheel whose tags that Python does not accept
    (a cp35 wheel for a 3.11 image) stops the build with one line."""
    if not installs_selected_wheel(plan, img):
        return
    from images import abi

    try:
        abi.check_selected(client, img.base_image)
    except UserError as err:
        raise UserError(f"{img.tag}: not built: {err}") from None


def build_image(plan: Plan, img, client=None, log=print, force=False, nocache=False) -> dict:
    """Build img when stale; return {'tag', 'id', 'key', 'built': bool, 'seconds'}."""
    from images import engine

    client = client or engine.client()
    if img.parent is None:
        from images.base import ensure_base_image

        ensure_base_image(client, img.base_image, log=log)
    from_id = _image_id(client, img.base_image)
    if from_id is None:
        raise UserError(f"{img.tag}: its parent image {img.base_image} does not exist; build it first "
                        f"(`doit images`)")
    check_selected_wheel(plan, img, client)
    key = image_key(plan, img, from_id)
    current = _image_id(client, img.tag)
    if not force and current is not None and \
            (client.images.get(img.tag).labels or {}).get(KEY_LABEL) == key.hex:
        if read_records().get(img.tag, {}).get("id") != current:  # built under another build dir
            _record(img.tag, _entry(plan, img, current, key, from_id, None))
        return {"tag": img.tag, "id": current, "key": key.hex, "built": False, "seconds": 0.0}
    t0 = time.monotonic()
    ctx_root = paths.BUILD / "contexts"
    ctx_root.mkdir(parents=True, exist_ok=True)
    ctx = ctx_root / f"{img.name}-{os.getpid()}"
    shutil.rmtree(ctx, ignore_errors=True)
    ctx.mkdir()
    logdir = paths.BUILD / "images" / img.name
    logdir.mkdir(parents=True, exist_ok=True)
    try:
        summary = prepare_context(plan, img, ctx, log)
        log(f"building {img.tag} from {img.dockerfile_path} (FROM {img.base_image}; key {key.short})")
        image_id, lines = None, []
        with open(logdir / "build.log", "w") as logf:
            for chunk in client.api.build(path=str(ctx), tag=img.tag, buildargs=img.build_args,
                                          labels=labels_for(plan, img, key, from_id), rm=True,
                                          forcerm=True, network_mode="none", pull=False, decode=True,
                                          nocache=nocache):
                if "stream" in chunk:
                    text = chunk["stream"]
                    logf.write(text)
                    for line in text.splitlines():
                        if line.strip():
                            lines.append(line)
                            log(f"  {img.name} | {line}")
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    logf.write(chunk["error"])
                    tail = " / ".join(lines[-3:])
                    raise UserError(f"{img.tag}: docker build failed: {chunk['error'].strip()} "
                                    f"(last output: {tail}; log {logdir / 'build.log'})")
        image_id = image_id or _image_id(client, img.tag)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    seconds = time.monotonic() - t0
    _record(img.tag, _entry(plan, img, image_id, key, from_id, round(seconds, 2)))
    log(f"built {img.tag} {image_id[:19] if image_id else ''} in {seconds:.1f}s")
    return {"tag": img.tag, "id": image_id, "key": key.hex, "built": True, "seconds": seconds}


def build_all(plan: Plan, client=None, log=print, only=None) -> list[dict]:
    """Build every image of the plan in parent-first order (`only`: names to build)."""
    from images import engine

    client = client or engine.client()
    return [build_image(plan, img, client, log) for img in plan.images
            if only is None or img.name in only]
