"""The git revision of a checkout, for provenance records (releases, image labels)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def _git(root: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)


def revision(root) -> dict:
    """{"revision": sha or None, "dirty": bool or None} for the checkout at root."""
    try:
        rev = _git(Path(root), "rev-parse", "HEAD")
        if rev.returncode != 0:
            return {"revision": None, "dirty": None}
        dirty = _git(Path(root), "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}
    return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def label(root) -> str:
    """One word: the sha, with "-dirty" when tracked files differ; "unknown" outside git."""
    rev = revision(root)
    if not rev["revision"]:
        return "unknown"
    return rev["revision"] + ("-dirty" if rev["dirty"] else "")
