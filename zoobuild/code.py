"""The code a stage runs, computed: the import closure of its entry modules inside the repo,
and the installed third-party distributions that closure reaches.

Read from the source with `ast`, never by importing: every `import` and `from ... import`
at any nesting level (inside functions too, where the heavy imports live), relative imports,
`from pkg import submodule` as the submodule's file, the `__init__.py` of every package on
the way, and the modules a registry loads by name.  A registry names its modules in string
constants (`importlib.import_module(TABLE[name])`), so a string constant counts as an import
when it names a repo module: absolutely (`"slim.preprocessing.vgg"`), as a package prefix
(`"slim.nets." + module`: every module of that package), or as a bare sibling module of the
file's own package (`"inception_v4"` in `slim/nets/__init__.py`); a package named so brings
its `__main__.py` (`python -m slim.benchmark` in a runner's command line).  Extra files are harmless
(a key a little too wide re-runs a stage); a missed file would serve stale results.

Third-party top-level names go to zoobuild/dists.py for the distributions and versions.

Memoised in the hash cache's SQLite file so that a no-op run parses and resolves nothing:
each file's import records by its sha256 (the digest itself comes through the cache keyed on
dev/inode/size/mtime), and each closure with what it was computed from: its files' stat
stamps, every path its resolution probed, and the distribution folders.
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

from zoobuild import dists, keys, paths

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
    result = Closure(files, dists.versions(third_party))
    # what resolution saw besides the files: every path it probed (a module added where none
    # was changes the answer), the package folders it listed, the distribution folders
    stamps.append(("", dists.path_stamp()))
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
            now = dists.path_stamp()
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
    dists.forget()
    _module_files.cache_clear()
    _PROBES.clear()
    _LISTINGS.clear()


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
    return keys.memo_db("imports (sha256 TEXT PRIMARY KEY, records TEXT)",
                        "closures (id TEXT PRIMARY KEY, body TEXT)")


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


# --- resolving names to files (probes, remembered: this runs on every load) ---

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
        return _with_main(_module_files(f"{pkg}.{name}", root)) if pkg else None
    files = _module_files(name, root)
    if files:
        return _with_main(files)
    top = name.split(".")[0]
    if top not in sys.stdlib_module_names and not _is_repo_top(top, root) and dists.provides(top):
        return top
    return None


def _with_main(files):
    """A package named in a string may be run (`python -m slim.benchmark`): its __main__.py."""
    if files and os.path.basename(files[-1]) == "__init__.py":
        main = os.path.join(os.path.dirname(files[-1]), "__main__.py")
        if _probe(main) == "file":
            return files + [main]
    return files


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
