"""The local wheelhouse: every wheel the images install, pinned and hash-checked, fetched on
the host so that image builds need no network.

* `closure(names)`: the pinned dependency closure of top-level names, walked through the
  installed metadata of this environment (the lock's versions: `uv pip sync` installed it),
  with markers evaluated for CPython 3.11 on Linux x86_64 (Debian bookworm, as the images).
* `fetch(names, debs, dest)`: `pip download --no-deps --require-hashes --only-binary=:all:`
  of exactly those pins, the hashes coming from requirements.lock, plus `apt-get download`
  of Debian packages (gosu).  `dest/index.json` maps each name to its file and sha256.

Compiled wheel hook (issue 6, `doit build_wheel`): `<build>/wheels/selected.json`, when it
exists, names a compiled wheel: `{"wheel": <path>, "dist": <name>, "replaces": <pin or null>,
"sha256": ...}`.  With `replaces: "tensorflow-cpu"` the wheel takes the place of that PyPI pin;
with `replaces: null` it is an extra wheel.  Either way it is copied into the wheelhouse,
recorded in index.json with `"compiled": true` and its own sha256, and installed by every
image whose slice requires tensorflow-cpu (tf-compiled-base).  No selected.json means the
stock pinned wheel (`doit build_wheel wheel=stock` removes it).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from zoobuild import atomic, paths
from zoobuild.digest import sha256_file
from zoobuild.errors import UserError

TF_NAME = "tensorflow-cpu"
_TARGET_ENV = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux",
               "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
               "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_path() -> Path:
    return paths.ROOT / "requirements.lock"


def selected_wheel_file() -> Path:
    return paths.BUILD / "wheels" / "selected.json"


def parse_lock(path=None) -> dict:
    """{normalized name: (version, [sha256 hex, ...])} from a uv/pip-compile lock with hashes."""
    path = Path(path or lock_path())
    out, current = {}, None
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith("--hash") else raw.strip()
        if not line:
            continue
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if m:
            current = norm(m.group(1))
            out[current] = (m.group(2), [])
        for h in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            if current:
                out[current][1].append(h)
    if not out:
        raise UserError(f"{path}: no pinned requirements found")
    return out


def _overridden() -> set:
    path = paths.ROOT / "overrides.txt"
    names = set()
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and "never" in line:
                names.add(norm(re.split(r"[\s;=<>!\[]", line)[0]))
    return names


_CLOSURES: dict = {}


def closure(names, exclude=(), lock=None) -> list[str]:
    """Sorted normalized names: `names` and everything they need, minus `exclude`'s closure.

    Remembered in build/wheelhouse/.closures.json per requirements.lock content (reading
    package metadata costs ~0.1 s, too much for a no-op `doit images`)."""
    from zoobuild.keys import canonical, file_digest

    memo_key = canonical([file_digest(lock_path()), sorted(map(norm, names)),
                          sorted(map(norm, exclude))])
    if memo_key in _CLOSURES:
        return list(_CLOSURES[memo_key])
    store = wheelhouse_dir() / ".closures.json"
    try:
        saved = json.loads(store.read_text())
    except (OSError, ValueError):
        saved = {}
    if memo_key in saved:
        _CLOSURES[memo_key] = saved[memo_key]
        return list(saved[memo_key])
    result = _closure(names, exclude, lock)
    _CLOSURES[memo_key] = saved[memo_key] = result
    try:
        atomic.write_text(store, json.dumps(saved))
    except OSError:
        pass
    return list(result)


def _closure(names, exclude=(), lock=None) -> list[str]:
    from importlib import metadata

    from packaging.requirements import Requirement

    lock = lock or parse_lock()
    skip = _overridden()

    def walk(roots) -> set:
        names: set = set()
        visited: set = set()
        todo = [(norm(n), ()) for n in roots]
        while todo:
            name, extras = todo.pop()
            if name in skip or (name, extras) in visited:
                continue
            visited.add((name, extras))
            if name not in lock:
                raise UserError(f"requirement {name!r} is not pinned in requirements.lock; add it to "
                                "requirements.in and re-lock")
            names.add(name)
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                raise UserError(f"{name} is pinned but not installed in {sys.prefix}; run uv pip sync")
            for text in dist.requires or []:
                req = Requirement(text)
                if req.marker is not None:
                    envs = [dict(_TARGET_ENV, extra=e) for e in (extras or ("",))]
                    if not any(req.marker.evaluate(env) for env in envs):
                        continue
                todo.append((norm(req.name), tuple(sorted(req.extras))))
        return names

    have = walk(exclude) if exclude else set()
    return sorted(walk(names) - have)


def _wheel_name(filename: str) -> tuple[str, str]:
    parts = filename[:-4].split("-")
    return norm(parts[0]), parts[1]


def wheelhouse_dir() -> Path:
    return paths.BUILD / "wheelhouse"


def selected() -> dict | None:
    """The compiled wheel selected by `doit build_wheel`, or None (stock pins)."""
    sel = selected_wheel_file()
    if not sel.exists():
        return None
    try:
        body = json.loads(sel.read_text())
        wheel = Path(body["wheel"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{sel}: expected JSON with a 'wheel' path")
    wheel = wheel if wheel.is_absolute() else sel.parent / wheel
    if not wheel.is_file():
        raise UserError(f"{sel}: wheel {wheel} does not exist; run `doit build_wheel`")
    dist = norm(body.get("dist") or _wheel_name(wheel.name)[0])
    replaces = norm(body["replaces"]) if body.get("replaces") else None
    return {"wheel": wheel, "dist": dist, "replaces": replaces}


def compiled_extras() -> list[str]:
    """Names of compiled wheels that are installed beside tensorflow-cpu (not replacing a pin)."""
    sel = selected()
    return [sel["dist"]] if sel and sel["replaces"] is None else []


def fetch(names, debs=(), dest=None, log=print) -> dict:
    """Download the pinned closure of `names` and the .debs into dest; return the index."""
    dest = Path(dest or paths.BUILD / "wheelhouse")
    dest.mkdir(parents=True, exist_ok=True)
    lock = parse_lock()
    wanted = closure(names, lock=lock)
    index_path = dest / "index.json"
    old = json.loads(index_path.read_text()) if index_path.exists() else {"wheels": {}, "debs": {}}
    index = {"wheels": {}, "debs": {}}
    sel = selected()
    todo = []

    def take_compiled(name):
        wheel = sel["wheel"]
        target = dest / wheel.name
        if not target.exists() or sha256_file(target) != sha256_file(wheel):
            atomic.copy_file(wheel, target)
        index["wheels"][name] = {"file": wheel.name, "version": _wheel_name(wheel.name)[1],
                                 "sha256": sha256_file(target), "compiled": True}

    if sel is not None and sel["replaces"] is None and TF_NAME in wanted:
        take_compiled(sel["dist"])
    for name in wanted:
        version, hashes = lock[name]
        if sel is not None and name == sel["replaces"]:
            take_compiled(name)
            continue
        prev = old["wheels"].get(name)
        if prev and prev.get("version") == version and prev["sha256"] in hashes \
                and (dest / prev["file"]).exists():
            index["wheels"][name] = prev
            continue
        todo.append((name, version, hashes))
    if todo:
        req = dest / ".download-requirements.txt"
        req.write_text("".join(f"{n}=={v} " + " ".join(f"--hash=sha256:{h}" for h in hs) + "\n"
                               for n, v, hs in todo))
        log(f"wheelhouse: pip download {len(todo)} pinned wheels into {dest}")
        res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
                              "--only-binary=:all:", "--disable-pip-version-check", "-q",
                              "-d", str(dest), "-r", str(req)], capture_output=True, text=True)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise UserError(f"pip download failed: {' | '.join(tail)}")
        by_name = {}
        for whl in dest.glob("*.whl"):
            n, v = _wheel_name(whl.name)
            by_name.setdefault((n, v), []).append(whl)
        for name, version, hashes in todo:
            for whl in by_name.get((name, version), []):
                digest = sha256_file(whl)
                if digest in hashes:
                    index["wheels"][name] = {"file": whl.name, "version": version, "sha256": digest}
                    break
            else:
                raise UserError(f"pip download gave no wheel of {name}=={version} matching the lock's hashes")
    for deb in debs:
        prev = old["debs"].get(deb)
        if prev and (dest / prev["file"]).exists():
            index["debs"][deb] = prev
            continue
        log(f"wheelhouse: apt-get download {deb}")
        res = subprocess.run(["apt-get", "download", deb], cwd=dest, capture_output=True, text=True)
        if res.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            res = subprocess.run(["apt-get", "download", deb], cwd=dest, capture_output=True, text=True)
        files = sorted(dest.glob(f"{deb}_*.deb"), key=lambda p: p.stat().st_mtime)
        if res.returncode != 0 or not files:
            raise UserError(f"apt-get download {deb} failed: {res.stderr.strip()[-200:]}")
        index["debs"][deb] = {"file": files[-1].name, "sha256": sha256_file(files[-1])}
    atomic.write_json(index_path, index)
    return index


def read_index(dest=None) -> dict:
    dest = Path(dest or paths.BUILD / "wheelhouse")
    try:
        return json.loads((dest / "index.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{dest}/index.json missing: run `doit wheelhouse` first")


def requirements_text(names, index) -> str:
    """requirements.txt for pip install --require-hashes --no-index inside an image build."""
    lines = []
    for name in names:
        entry = index["wheels"].get(name)
        if entry is None:
            raise UserError(f"wheelhouse has no wheel for {name}: run `doit wheelhouse`")
        if entry.get("compiled"):
            lines.append(f"/wheelhouse/{entry['file']} --hash=sha256:{entry['sha256']}")
        else:
            lines.append(f"{name}=={entry['version']} --hash=sha256:{entry['sha256']}")
    return "\n".join(lines) + "\n"
