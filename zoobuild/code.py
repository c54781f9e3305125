"""The code a stage runs, computed: the import closure of its entry modules inside the repo,
and the installed third-party distributions that closure reaches.

Read from the source with `ast`, never by importing: every `import` and `from ... import`
at any nesting level (inside functions too, where the heavy imports live), relative imports,
`from pkg import submodule` as the submodule's file, the `__init__.py` of every package on
the way, and the modules a registry loads by name.  A registry names its modules in string
constants (`importlib.import_module(TABLE[name])`), so a string constant counts as an import
when it names a repo module: absolutely (`"slim.preprocessing.vgg"`), as a package prefix
(`"slim.nets." + module`: every module of that package), or as a bare sibling module of the
file's own package (`"inception_v4"` in `slim/nets/__init__.py`).  Extra files are harmless
(a key a little too wide re-runs a stage); a missed file would serve stale results.

Third-party names map to distributions through `importlib.metadata.packages_distributions()`,
widened by their `Requires-Dist` closure (tensorflow-cpu brings protobuf, keras, ml-dtypes...),
less NO_EFFECT.  Memoised twice so a no-op run parses nothing: each file's import records by
its sha256 in the hash cache's SQLite file (the digest itself comes through the cache keyed on
dev/inode/size/mtime), and the distribution tables by a stamp of the `sys.path` directories
(installing or removing a distribution changes its site-packages directory's mtime).
"""
from __future__ import annotations

import ast
import functools
import json
import os
import re
import stat
import sys
from dataclasses import dataclass

from zoobuild import keys, paths

# Libraries that only report, draw or coordinate: their version cannot change what a stage
# computes, so upgrading them re-runs nothing.
NO_EFFECT = frozenset({
    "rich", "tqdm", "filelock",  # progress bars and the run lock
    "pygments", "markdown-it-py", "mdurl",  # rich's own rendering
    "matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing",  # the latency chart
    "doit", "cloudpickle",  # the task runner never reaches a stage's result
    "packaging",  # parses version ranges for messages and lookups
    "pip", "setuptools", "wheel",  # install-time tools some distributions list as requirements
})

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\.?$")


@dataclass(frozen=True)
class Closure:
    files: dict   # repo-relative posix path (absolute outside the repo) -> sha256
    libs: dict    # distribution name -> version


def closure(entries, root=None) -> Closure:
    """The closure of `entries`: dotted module names inside the repo, or paths of .py files."""
    root = os.path.realpath(root or paths.ROOT)
    memo_key = (tuple(map(str, entries)), root)
    memo = _CLOSURES.get(memo_key)
    if memo is not None and _still(memo[0]):  # this process's probes stand: files and sites
        return memo[1]
    memo = _stored(memo_key)
    if memo is not None and _still(memo[0]):  # nothing it was computed from changed since
        _CLOSURES[memo_key] = ([s for s in memo[0] if s[0][:1] not in ("?", "#")], memo[1])
        return memo[1]
    seen: dict[str, str] = {}
    stamps = []
    third_party: set[str] = set()
    todo = []
    for entry in entries:
        todo += _with_packages(_entry_file(str(entry), root), root)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        stamps.append((path, _stat(path)))  # before reading: a later edit fails the check
        digest = keys.file_digest(path)
        seen[path] = digest
        deps, tops = _file_deps(path, digest, root)
        third_party |= tops
        todo += [f for f in deps if f not in seen]
    files = {_rel(p, root): d for p, d in sorted(seen.items())}
    result = Closure(files, third_party_versions(third_party))
    # what resolution saw besides the files: every path it probed (a module added where none
    # was changes the answer), the package folders it listed, the distribution folders
    stamps.append(("", _path_stamp()))
    _CLOSURES[memo_key] = (stamps, result)
    _store(memo_key, stamps + [("?" + p, k) for p, k in _PROBES.items()]
           + [("#" + f, names) for f, names in _LISTINGS.items()], result)
    return result


_CLOSURES: dict = {}


def _closure_id(memo_key) -> str:
    # the rules of this module and the Python version (its stdlib names) decide a closure too
    return json.dumps([*memo_key, keys.file_digest(__file__), sys.version])


def _stored(memo_key):
    row = _db().execute("SELECT body FROM closures WHERE id=?", (_closure_id(memo_key),)).fetchone()
    if not row:
        return None
    body = json.loads(row[0])
    stamps = [(p, tuple(s) if p and p[0] not in "?#" and isinstance(s, list) else s)
              for p, s in body["stamps"]]  # JSON made the stat tuples lists
    return stamps, Closure(body["files"], body["libs"])


def _store(memo_key, stamps, result: Closure) -> None:
    body = {"stamps": stamps, "files": result.files, "libs": result.libs}
    _db().execute("INSERT OR REPLACE INTO closures VALUES (?,?)",
                  (_closure_id(memo_key), json.dumps(body)))


def _stat(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _still(stamps) -> bool:
    """Whether what a closure was computed from is still what this process sees."""
    for p, s in stamps:
        if p == "":
            now = _path_stamp()
        elif p[0] == "?":
            now = _probe(p[1:])
        elif p[0] == "#":
            now = [os.path.basename(f) for f in _py_files(p[1:])]
        else:
            now = _stat(p)
        if now != s:
            return False
    return True


def forget() -> None:
    """Drop this process's memos, as a new process starts (the SQLite ones stay)."""
    _CLOSURES.clear()
    _DEPS.clear()
    _PARSED.clear()
    _TABLES.clear()
    _module_files.cache_clear()
    _PROBES.clear()
    _LISTINGS.clear()
    _STAMP_DIRS.clear()


def _file_deps(path: str, digest: str, root: str) -> tuple:
    """(repo files, third-party top-level names) one file imports; once per process."""
    memo_key = (path, digest, root)
    got = _DEPS.get(memo_key)
    if got is None:
        deps, tops = [], set()
        for kind, name in _records(path, digest):
            found = _resolve(kind, name, path, root)
            if isinstance(found, str):
                tops.add(found)
            elif found:
                deps += found
        got = _DEPS[memo_key] = (list(dict.fromkeys(deps)), frozenset(tops))
    return got


_DEPS: dict = {}


# --- one file's imports, parsed once per content ----------------------------------------------

def _records(path: str, digest: str) -> list:
    """(kind, name) pairs of one file; kind is 'abs', 'rel' or 'str'.  Memoised by digest."""
    got = _PARSED.get(digest)
    if got is not None:
        return got
    conn = _db()
    memo_id = f"{digest}:{keys.file_digest(__file__)}"  # new parsing rules read files again
    row = conn.execute("SELECT records FROM imports WHERE sha256=?", (memo_id,)).fetchone()
    if row:
        got = [tuple(r) for r in json.loads(row[0])]
    else:
        with open(path, "rb") as f:
            got = parse_imports(f.read(), path)
        conn.execute("INSERT OR REPLACE INTO imports VALUES (?,?)", (memo_id, json.dumps(got)))
    _PARSED[digest] = got
    return got


_PARSED: dict = {}  # sha256 -> records, for this process


def _db():
    """The hash cache's SQLite connection, with this module's two tables."""
    conn = keys.hash_cache()._conn()
    if id(conn) not in _READY:
        conn.execute("CREATE TABLE IF NOT EXISTS imports (sha256 TEXT PRIMARY KEY, records TEXT)")
        conn.execute("CREATE TABLE IF NOT EXISTS dists (stamp TEXT PRIMARY KEY, body TEXT)")
        conn.execute("CREATE TABLE IF NOT EXISTS closures (id TEXT PRIMARY KEY, body TEXT)")
        _READY[id(conn)] = conn  # held, so that no later connection reuses its id
    return conn


_READY: dict = {}


def parse_imports(source: bytes, filename: str = "<source>") -> list:
    """Every import of a module's source, at any depth, plus string constants that may name
    modules.  'rel' names carry their level as leading dots (`..pkg.mod`, `.` + name)."""
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError):
        # a file being edited: its digest is in the key and the stage fails if run, so the
        # graph still loads; the fixed file has another digest and is read again
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [("abs", a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            kind = "rel" if node.level else "abs"
            prefix = "." * node.level
            out.append((kind, prefix + base))
            for a in node.names:
                if a.name != "*":  # `from pkg import sub` may name a submodule
                    out.append((kind, prefix + (f"{base}.{a.name}" if base else a.name)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if 0 < len(node.value) < 200 and _DOTTED.match(node.value):
                out.append(("str", node.value))
    return sorted(set(out))


# --- resolving names to files (strings and one listing per folder: this runs on every load) ---

def _resolve(kind: str, name: str, path: str, root: str):
    """Repo files for an import (a list), a third-party top-level name (a str), or None."""
    if kind == "rel":
        level = len(name) - len(name.lstrip("."))
        pkg = _package_of(path, root)
        if pkg is None:
            return None
        parts = pkg.split(".") if pkg else []
        if level - 1 > len(parts):
            return None
        base = parts[: len(parts) - (level - 1)]
        rest = name[level:]
        return _module_files(".".join(base + ([rest] if rest else [])), root)
    if kind == "abs":
        files = _module_files(name, root)
        if files:
            return files
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or _is_repo_top(top, root):
            return None
        return top
    # a string constant: a package prefix, a sibling module, or an absolute module
    if name.endswith("."):
        files = _module_files(name[:-1], root)
        pkg_dir = os.path.join(root, *name[:-1].split("."))
        if files and files[-1] == os.path.join(pkg_dir, "__init__.py"):
            return files + _py_files(pkg_dir)
        return None
    if "." not in name:  # a bare word names a sibling module only ("images" is too common)
        pkg = _package_of(path, root)
        return _module_files(f"{pkg}.{name}", root) if pkg else None
    files = _module_files(name, root)
    if files:
        return files
    top = name.split(".")[0]
    if top not in sys.stdlib_module_names and not _is_repo_top(top, root) and top in _top_level_map():
        return top
    return None


def _probe(path: str) -> str | None:
    """'file', 'dir' or None; each path once per process, and closures keep the answers."""
    kind = _PROBES.get(path, _UNSEEN)
    if kind is _UNSEEN:
        try:
            kind = "dir" if stat.S_ISDIR(os.stat(path).st_mode) else "file"
        except OSError:
            kind = None
        _PROBES[path] = kind
    return kind


_UNSEEN = object()
_PROBES: dict = {}


def _py_files(folder: str) -> list:
    """The .py files of a package folder (a registry's package prefix), remembered likewise."""
    names = _LISTINGS.get(folder)
    if names is None:
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
        except OSError:
            names = []
        _LISTINGS[folder] = names
    return [os.path.join(folder, n) for n in names]


_LISTINGS: dict = {}


@functools.lru_cache(maxsize=None)
def _module_files(name: str, root: str) -> list | None:
    """The files importing `name` executes: each package's __init__.py and the module itself.
    Found by probing paths, never by listing folders, so that a big folder that merely shares
    a name (build/) is never read and its churn never invalidates a remembered closure."""
    if not name or not all(p.isidentifier() for p in name.split(".")):
        return None
    parts = name.split(".")
    files, folder = [], root
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        sub = os.path.join(folder, part)
        if _probe(os.path.join(sub, "__init__.py")) == "file":  # a package wins over a module
            files.append(os.path.join(sub, "__init__.py"))
            folder = sub
        elif last and _probe(sub + ".py") == "file":
            files.append(sub + ".py")
        elif not last and _probe(sub) == "dir":  # a namespace folder
            folder = sub
        else:
            return None
    return files or None


def _is_repo_top(top: str, root: str) -> bool:
    return _probe(os.path.join(root, top)) == "dir" or _probe(os.path.join(root, f"{top}.py")) == "file"


@functools.lru_cache(maxsize=None)
def _package_of(path: str, root: str) -> str | None:
    """The dotted package a file belongs to ('' at the repo root, None outside the repo)."""
    folder = os.path.dirname(path)
    if folder == root:
        return ""
    if not folder.startswith(root + os.sep):
        return None
    return folder[len(root) + 1:].replace(os.sep, ".")


def _entry_file(entry: str, root: str) -> str:
    if entry.endswith(".py") or os.sep in entry:
        p = entry if os.path.isabs(entry) else os.path.join(root, entry)
        if not os.path.isfile(p):
            raise FileNotFoundError(f"code entry {entry}: no such file")
        return os.path.realpath(p)
    files = _module_files(entry, root)
    base = os.path.join(root, *entry.split("."))
    if not files or files[-1] not in (base + ".py", os.path.join(base, "__init__.py")):
        raise ModuleNotFoundError(f"code entry {entry}: no module of that name under {root}")
    return files[-1]


def _with_packages(p: str, root: str) -> list:
    pkg = _package_of(p, root)
    return [p] + ((_module_files(pkg, root) or []) if pkg else [])


def _rel(p: str, root: str) -> str:
    if p.startswith(root + os.sep):
        return p[len(root) + 1:].replace(os.sep, "/")
    return p


# --- third-party distributions ------------------------------------------------------------------

def canonical_name(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def third_party_versions(top_names) -> dict:
    """dist -> version for the distributions providing `top_names` and what they require."""
    tables = _dist_tables()
    todo = [d for t in top_names for d in tables["top"].get(t, [])]
    found, learned = {}, False
    while todo:
        d = todo.pop()
        if d in found or d not in tables["versions"]:
            continue
        found[d] = tables["versions"][d]
        if d not in tables["requires"]:  # markers are evaluated once, then kept with the tables
            tables["requires"][d] = sorted({r for r in map(_required_name, tables["raw"].get(d, []))
                                            if r})
            learned = True
        todo += tables["requires"][d]
    if learned:
        _store_tables()
    return {d: v for d, v in sorted(found.items()) if d not in NO_EFFECT}


def _top_level_map() -> dict:
    return _dist_tables()["top"]


def _path_stamp() -> str:
    """The sys.path folders that hold distributions, with their mtimes: installing,
    upgrading or removing a distribution adds or removes a *.dist-info folder in one of them."""
    key = tuple(sys.path)
    folders = _STAMP_DIRS.get(key)
    if folders is None:
        folders = _STAMP_DIRS[key] = [e for e in key if _holds_dists(e)]
    parts = []
    for folder in folders:
        st = _stat(folder or ".")
        parts.append(f"{folder}:{st[3] if st else '-'}")
    return "\n".join(parts)


def _holds_dists(entry: str) -> bool:
    if os.path.basename(entry) in ("site-packages", "dist-packages"):
        return True
    try:
        return any(n.endswith((".dist-info", ".egg-info")) for n in os.listdir(entry or "."))
    except OSError:
        return False


_STAMP_DIRS: dict = {}
_TABLES: dict = {}


def _dist_tables() -> dict:
    stamp = _path_stamp()
    if _TABLES.get("stamp") == stamp:
        return _TABLES["body"]
    conn = _db()
    row = conn.execute("SELECT body FROM dists WHERE stamp=?", (stamp,)).fetchone()
    body = json.loads(row[0]) if row else _read_dist_tables()
    _TABLES.clear()
    _TABLES.update(stamp=stamp, body=body)
    if not row:
        _store_tables()
    return body


def _store_tables() -> None:
    _db().execute("INSERT OR REPLACE INTO dists VALUES (?,?)",
                 (_TABLES["stamp"], json.dumps(_TABLES["body"])))


_HEADER = re.compile(r"^(Name|Version|Requires-Dist):\s*(.*?)\s*$", re.M)


def _read_dist_tables() -> dict:
    from importlib import metadata

    top = {t: sorted({canonical_name(d) for d in ds})
           for t, ds in metadata.packages_distributions().items()}
    versions, raw = {}, {}
    for dist in metadata.distributions():  # the first on sys.path wins, as importing does
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        head = text.split("\n\n", 1)[0]  # the headers; the description follows a blank line
        fields: dict = {}
        for field, value in _HEADER.findall(head):
            fields.setdefault(field, []).append(value)
        name = canonical_name((fields.get("Name") or [""])[0])
        if not name or name in versions:
            continue
        versions[name] = (fields.get("Version") or [""])[0]
        raw[name] = fields.get("Requires-Dist", [])
    return {"top": top, "versions": versions, "raw": raw, "requires": {}}
def _required_name(req: str) -> str | None:
    """The distribution a Requires-Dist line needs here (extras and other platforms: None)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # without packaging: skip only what is plainly an extra
        if "extra ==" in req or "extra==" in req:
            return None
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        return canonical_name(m.group(1)) if m else None
    try:
        r = Requirement(req)
    except Exception:  # an unparsable line in someone's metadata: count it as needed
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        return canonical_name(m.group(1)) if m else None
    if r.marker is not None and not r.marker.evaluate({"extra": ""}):
        return None
    return canonical_name(r.name)
