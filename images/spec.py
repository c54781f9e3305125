"""The image spec format: YAML files under specs/, merged in sorted file-name order.

    header: |                      # text put at the top of every generated Dockerfile
      ...
    releases:
      <release>:
        tag_specs: ["{_TAG_PREFIX}{tf-compiled-base}{image-recognition}{vgg-16}"]
        is_dockerfiles: true       # write its Dockerfiles under dockerfiles/ (committed)
        upload_images: true        # `doit push` pushes its images
    slice_sets:
      <set>:
        - add_to_name: "-vgg-16-fp32-training"
          dockerfile_exclusive_name: vgg-16-fp32-training
          dockerfile_subdirectory: image-recognition
          partials: [model_package]             # images/partials/<name>.partial.Dockerfile
          args: [MODEL_NAME=vgg_16]             # K=V, applied left to right along the chain
          files: [{source: path, destination: path}]        # copied into the build context
          downloads: [{source: url, destination: path, sha256: hex}]
          package: {name: vgg_16-fp32-training, files: [{source: slim, destination: slim}]}
          tests: [{name: import, command: "python -c 'import tensorflow'"}]
          requirements: [tensorflow-cpu]        # pinned in requirements.lock; from the wheelhouse
          debs: [gosu]                          # .deb files from the wheelhouse (apt-get download)

This module only reads and checks the files: every error is one line
`file:line: field: what was wrong, what was expected`.  Expanding tag_specs into
images is images/assemble.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from zoobuild.errors import UserError
from zoobuild.fields import check_fields

PARTIAL_SUFFIX = ".partial.Dockerfile"


class SpecError(UserError):
    """A spec file is wrong; the message names file, line and field."""


@dataclass(frozen=True)
class Where:
    file: str
    line: int

    def __str__(self):
        return f"{self.file}:{self.line}"


def fail(where: Where, fieldname: str, message: str):
    raise SpecError(f"{where}: {fieldname}: {message}")


# --- YAML with line numbers ---------------------------------------------------------------

class _Map(dict):
    """A mapping that remembers the line of itself and of each key."""
    where: Where
    key_where: dict


class _Seq(list):
    where: Where
    item_where: list


def _load_yaml(path: Path, display: str):
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml parses ~10x faster
        pass

    def where(node):
        return Where(display, node.start_mark.line + 1)

    def construct_mapping(loader, node, deep=False):
        loader.flatten_mapping(node)
        out = _Map()
        out.where, out.key_where = where(node), {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if not isinstance(key, str):
                fail(where(knode), str(key), "keys must be strings")
            if key in out:
                fail(where(knode), key, "given twice in one mapping")
            out[key] = loader.construct_object(vnode, deep=True)
            out.key_where[key] = where(knode)
        return out

    def construct_sequence(loader, node, deep=False):
        out = _Seq(loader.construct_object(n, deep=True) for n in node.value)
        out.where, out.item_where = where(node), [where(n) for n in node.value]
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{display}: cannot read: {err.strerror}")
    try:
        data = yaml.load(text, Loader=Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise SpecError(f"{display}:{line}: YAML syntax: {err.problem or err}")
    except yaml.YAMLError as err:
        raise SpecError(f"{display}:1: YAML syntax: {err}")
    if data is None:
        data = _Map()
        data.where, data.key_where = Where(display, 1), {}
    if not isinstance(data, _Map):
        fail(Where(display, 1), "(top)", "expected a mapping with header, releases, slice_sets")
    return data


# --- the schema ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FileSpec:
    source: str
    destination: str
    where: Where


@dataclass(frozen=True)
class Download:
    source: str
    destination: str
    sha256: str
    where: Where


@dataclass(frozen=True)
class TestSpec:
    name: str
    command: str
    as_caller: bool        # run as the caller's uid/gid through the entrypoint (LOCAL_USER_ID)
    mount: str | None      # a fresh host directory is mounted here, read-write
    where: Where


@dataclass(frozen=True)
class PackageSpec:
    name: str
    files: tuple           # FileSpec: source (repo-relative file or dir) -> destination in package
    where: Where


@dataclass(frozen=True)
class Slice:
    set_name: str
    index: int
    add_to_name: str
    dockerfile_exclusive_name: str | None
    dockerfile_subdirectory: str
    partials: tuple
    args: tuple            # ((name, value), ...) in spec order
    files: tuple
    downloads: tuple
    tests: tuple
    package: PackageSpec | None
    requirements: tuple    # pinned PyPI names installed from the wheelhouse (closure computed)
    debs: tuple            # Debian packages fetched on the host (`apt-get download`), e.g. gosu
    where: Where
    resources: tuple = ()  # ((stage, "CPU/MEMORY"), ...): requests of the stages run in this image


@dataclass(frozen=True)
class Release:
    name: str
    tag_specs: tuple       # ((text, Where), ...)
    is_dockerfiles: bool
    upload_images: bool
    where: Where


@dataclass
class Spec:
    header: str
    releases: dict = field(default_factory=dict)     # name -> Release
    slice_sets: dict = field(default_factory=dict)   # name -> [Slice]
    files: list = field(default_factory=list)        # spec files read, in merge order
    partials_dir: Path | None = None
    root: Path | None = None                         # file sources are relative to this


_ARG_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PARTIAL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def _check_fields(m: _Map, allowed: dict, required: tuple, ctx: str):
    def at(key, message):
        fail(m.key_where.get(key, m.where), f"{ctx}.{key}" if ctx else key, message)

    check_fields(m, allowed, required, fail=at)


def _list(m: _Map, key: str) -> _Seq:
    val = m.get(key)
    if val is None:
        out = _Seq()
        out.where, out.item_where = m.key_where.get(key, m.where), []
        return out
    return val


def _safe_rel(value: str, where: Where, fieldname: str) -> str:
    p = Path(value)
    if not value or p.is_absolute() or ".." in p.parts:
        fail(where, fieldname, f"{value!r}: expected a relative path inside the tree (no '..')")
    return p.as_posix()


def _file_specs(seq: _Seq, ctx: str, what: str = "files") -> tuple:
    out = []
    for i, (item, where) in enumerate(zip(seq, seq.item_where)):
        c = f"{ctx}.{what}[{i}]"
        if not isinstance(item, _Map):
            fail(where, c, "expected a mapping with source and destination")
        _check_fields(item, {"source": str, "destination": str}, ("source", "destination"), c)
        out.append(FileSpec(_safe_rel(item["source"], item.key_where["source"], f"{c}.source"),
                            _safe_rel(item["destination"], item.key_where["destination"],
                                      f"{c}.destination"), where))
    return tuple(out)


_SLICE_FIELDS = {
    "add_to_name": str, "dockerfile_exclusive_name": str, "dockerfile_subdirectory": str,
    "partials": list, "args": list, "files": list, "downloads": list, "tests": list,
    "package": dict, "requirements": list, "debs": list, "resources": dict,
}
_REQUEST_RE = re.compile(r"^\d+(\.\d+)?m?/\d+(\.\d+)?(k|M|G|T|Ki|Mi|Gi|Ti)?$")


def _parse_slice(set_name: str, index: int, m, where: Where, spec: Spec) -> Slice:
    ctx = f"slice_sets.{set_name}[{index}]"
    if not isinstance(m, _Map):
        fail(where, ctx, "expected a mapping (a slice)")
    _check_fields(m, _SLICE_FIELDS, (), ctx)
    partials = []
    pseq = _list(m, "partials")
    for name, pw in zip(pseq, pseq.item_where):
        if not isinstance(name, str) or not _PARTIAL_RE.match(name) or ".." in name:
            fail(pw, f"{ctx}.partials", f"{name!r}: expected a partial name like 'model_package'")
        path = spec.partials_dir / f"{name}{PARTIAL_SUFFIX}"
        if not path.is_file():
            fail(pw, f"{ctx}.partials", f"partial {name!r} not found: expected file {path}")
        partials.append(name)
    args = []
    aseq = _list(m, "args")
    for text, aw in zip(aseq, aseq.item_where):
        match = _ARG_RE.match(str(text)) if isinstance(text, (str, int, float)) else None
        if not match:
            fail(aw, f"{ctx}.args", f"{text!r}: expected NAME=value")
        args.append((match.group(1), match.group(2)))
    files = _file_specs(_list(m, "files"), ctx)
    for f in files:
        if not (spec.root / f.source).exists():
            fail(f.where, f"{ctx}.files.source", f"{f.source!r} does not exist under {spec.root}")
    downloads = []
    dseq = _list(m, "downloads")
    for i, (item, dw) in enumerate(zip(dseq, dseq.item_where)):
        c = f"{ctx}.downloads[{i}]"
        if not isinstance(item, _Map):
            fail(dw, c, "expected a mapping with source, destination, sha256")
        _check_fields(item, {"source": str, "destination": str, "sha256": str},
                      ("source", "destination", "sha256"), c)
        if not _SHA_RE.match(item["sha256"]):
            fail(item.key_where["sha256"], f"{c}.sha256", "expected 64 lowercase hex digits")
        downloads.append(Download(item["source"], _safe_rel(item["destination"], item.key_where[
            "destination"], f"{c}.destination"), item["sha256"], dw))
    tests = []
    tseq = _list(m, "tests")
    for i, (item, tw) in enumerate(zip(tseq, tseq.item_where)):
        c = f"{ctx}.tests[{i}]"
        if not isinstance(item, _Map):
            fail(tw, c, "expected a mapping with name and command")
        _check_fields(item, {"name": str, "command": str, "as_caller": bool, "mount": str},
                      ("name", "command"), c)
        if not _NAME_RE.match(item["name"]):
            fail(item.key_where["name"], f"{c}.name", f"{item['name']!r}: expected [A-Za-z0-9_.-]")
        mount = item.get("mount")
        if mount is not None and not mount.startswith("/"):
            fail(item.key_where["mount"], f"{c}.mount", f"{mount!r}: expected an absolute path")
        tests.append(TestSpec(item["name"], item["command"], bool(item.get("as_caller", False)),
                              mount, tw))
    package = None
    if m.get("package") is not None:
        pm = m["package"]
        c = f"{ctx}.package"
        _check_fields(pm, {"name": str, "files": list}, ("name", "files"), c)
        if not _NAME_RE.match(pm["name"]):
            fail(pm.key_where["name"], f"{c}.name", f"{pm['name']!r}: expected [A-Za-z0-9_.-]")
        pfiles = _file_specs(pm["files"], c)
        for f in pfiles:
            if not (spec.root / f.source).exists():
                fail(f.where, f"{c}.files.source", f"{f.source!r} does not exist under {spec.root}")
        package = PackageSpec(pm["name"], pfiles, pm.where)
    subdir = m.get("dockerfile_subdirectory") or ""
    if subdir:
        subdir = _safe_rel(subdir, m.key_where["dockerfile_subdirectory"],
                           f"{ctx}.dockerfile_subdirectory")
    excl = m.get("dockerfile_exclusive_name")
    if excl is not None and not _NAME_RE.match(excl):
        fail(m.key_where["dockerfile_exclusive_name"], f"{ctx}.dockerfile_exclusive_name",
             f"{excl!r}: expected [A-Za-z0-9_.-]")
    names = {}
    for key in ("requirements", "debs"):
        seq = _list(m, key)
        for item, iw in zip(seq, seq.item_where):
            if not isinstance(item, str) or not _NAME_RE.match(item):
                fail(iw, f"{ctx}.{key}", f"{item!r}: expected a package name")
        names[key] = tuple(seq)
    resources = []
    for stage, request in (m.get("resources") or {}).items():
        if not isinstance(request, str) or not _REQUEST_RE.match(request):
            fail(m.key_where["resources"], f"{ctx}.resources.{stage}",
                 f"{request!r}: expected CPU/MEMORY like 4/8G (a pipeline stage's requests)")
        resources.append((str(stage), request))
    return Slice(set_name, index, m.get("add_to_name") or "", excl, subdir, tuple(partials),
                 tuple(args), files, tuple(downloads), tuple(tests), package,
                 names["requirements"], names["debs"], where, tuple(resources))


def spec_files(spec_dir) -> list[Path]:
    return sorted(Path(spec_dir).glob("*.yml"), key=lambda p: p.name)


def load(spec_dir, partials_dir=None, root=None) -> Spec:
    """Read and check every specs/*.yml (sorted by name) into one Spec."""
    spec_dir = Path(spec_dir)
    root = Path(root) if root else spec_dir.resolve().parent
    partials_dir = Path(partials_dir) if partials_dir else Path(__file__).parent / "partials"
    files = spec_files(spec_dir)
    if not files:
        raise SpecError(f"{spec_dir}: no *.yml spec files")
    spec = Spec(header="", files=files, partials_dir=partials_dir, root=root)
    header_where = None
    releases: dict = {}
    for path in files:
        display = _display(path, root)
        data = _load_yaml(path, display)
        _check_fields(data, {"header": str, "releases": dict, "slice_sets": dict}, (), "")
        if data.get("header") is not None:
            if header_where is not None:
                fail(data.key_where["header"], "header", f"already given at {header_where}")
            spec.header, header_where = data["header"], data.key_where["header"]
        for rname, rm in (data.get("releases") or {}).items():
            rw = data["releases"].key_where[rname]
            if not isinstance(rm, _Map):
                fail(rw, f"releases.{rname}", "expected a mapping with tag_specs")
            _check_fields(rm, {"tag_specs": list, "is_dockerfiles": bool, "upload_images": bool},
                          ("tag_specs",), f"releases.{rname}")
            tags = []
            for text, tw in zip(rm["tag_specs"], rm["tag_specs"].item_where):
                if not isinstance(text, str):
                    fail(tw, f"releases.{rname}.tag_specs", f"{text!r}: expected a string")
                tags.append((text, tw))
            # a release named in several files collects their tag_specs; flags given in more
            # than one file must agree, and a flag given nowhere takes its default
            acc = releases.setdefault(rname, {"tags": [], "flags": {}, "where": rw})
            acc["tags"] += tags
            for flag in ("is_dockerfiles", "upload_images"):
                if flag not in rm:
                    continue
                prev = acc["flags"].get(flag)
                if prev is not None and prev[0] != rm[flag]:
                    fail(rm.key_where[flag], f"releases.{rname}.{flag}",
                         f"{rm[flag]} contradicts {prev[0]} given at {prev[1]}")
                acc["flags"][flag] = (rm[flag], rm.key_where[flag])
        for sname, seq in (data.get("slice_sets") or {}).items():
            sw = data["slice_sets"].key_where[sname]
            if sname in spec.slice_sets:
                fail(sw, f"slice_sets.{sname}",
                     f"slice set defined twice (first at {spec.slice_sets[sname][0].where})"
                     if spec.slice_sets[sname] else "slice set defined twice")
            if not _NAME_RE.match(sname):
                fail(sw, f"slice_sets.{sname}", "expected a name of [A-Za-z0-9_.-]")
            if not isinstance(seq, _Seq) or not seq:
                fail(sw, f"slice_sets.{sname}", "expected a non-empty list of slices")
            spec.slice_sets[sname] = [_parse_slice(sname, i, s, w, spec)
                                      for i, (s, w) in enumerate(zip(seq, seq.item_where))]
    for rname, acc in releases.items():
        flags = {k: v[0] for k, v in acc["flags"].items()}
        spec.releases[rname] = Release(rname, tuple(acc["tags"]), bool(flags.get("is_dockerfiles", True)),
                                       bool(flags.get("upload_images", False)), acc["where"])
    if not spec.releases:
        raise SpecError(f"{_display(files[0], root)}:1: releases: no release defined in {spec_dir}")
    return spec


def _display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
