"""The catalog: `index.json` and a `MODELS.md` table, regenerated from the store's manifests.

Deterministic: the same manifests always give byte-identical files (sorted keys and
rows, no clocks), so regenerating a catalog is a no-op when nothing was published.
"""
from __future__ import annotations

import json

from artifacts import semver, store as st

COLUMNS = ("model", "version", "arch", "precision", "format", "top-1", "throughput (img/s)", "size",
           "top-1 from", "package sha256")


def _top1(a: dict, bench_result: dict, m: dict) -> tuple:
    """(top-1, where it was measured): the conversion gate's figure on labelled data first
    (what decided that this precision may ship), then an accuracy benchmark, then eval."""
    gate = a.get("gate") or {}
    if gate.get("data") == "tfrecords" and gate.get("top1") is not None:
        return gate["top1"], "gate"
    if bench_result.get("top1") is not None:
        return bench_result["top1"], "benchmark"
    if a.get("format") == "savedmodel" and (m.get("eval") or {}).get("top1") is not None:
        return m["eval"]["top1"], "eval"
    return None, None


def _rows_for(m: dict) -> list[dict]:
    """One row per precision the artifact carries, each with its own file size."""
    rows = []
    bench = m.get("benchmark") or {}
    for a in m.get("artifacts") or [{"precision": "fp32", "format": "unknown"}]:
        result = bench.get(f"{a.get('format')}-{a.get('precision')}") or {}
        top1, source = _top1(a, result, m)
        rows.append({
            "precision": a.get("precision"),
            "format": a.get("format"),
            "top1": top1,
            "top1_from": source,
            "gate": a.get("gate"),
            "size": a.get("size"),
            "throughput": result.get("throughput_ips"),
        })
    return rows


def build_index(store: st.Store) -> dict:
    store.invalidate()
    out = {"schema": 1, "models": {}}
    for name in st.models(store):
        entry = {"versions": {}, "channels": {}}
        for version in st.versions(store, name) + [c for c in st.CHANNELS if st.archs(store, name, c)]:
            per_arch = {}
            for arch in st.archs(store, name, version):
                m = st.manifest(store, name, version, arch)
                per_arch[arch] = {
                    "path": "/".join(st.artifact_dir(name, version, arch)) + "/" + m["tarball"]["file"],
                    "sha256": m["tarball"]["sha256"],
                    "size": m["tarball"]["size"],
                    "signature": m.get("signature"),
                    "rows": _rows_for(m),
                }
            (entry["channels"] if version in st.CHANNELS else entry["versions"])[version] = per_arch
        if entry["versions"]:
            entry["latest"] = semver.sort_versions(entry["versions"])[-1]
        out["models"][name] = entry
    return out


def _human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _fmt(x, pattern="{:.3f}") -> str:
    return "–" if x is None else pattern.format(x)


def render_markdown(index: dict) -> str:
    lines = ["# Models", "", "Generated from the artifact store by `artifacts.catalog`; do not edit.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, entry in sorted(index["models"].items()):
        ordered = semver.sort_versions(entry["versions"])[::-1] + sorted(entry.get("channels", {}))
        for version in ordered:
            per_arch = entry["versions"].get(version) or entry["channels"][version]
            for arch, a in sorted(per_arch.items()):
                for r in a["rows"]:
                    lines.append("| " + " | ".join([
                        name, version, arch, str(r["precision"]), str(r["format"]),
                        _fmt(r["top1"]), _fmt(r["throughput"], "{:.1f}"),
                        _human_size(r["size"]) if r.get("size") is not None else "–",
                        r.get("top1_from") or "–", f"`{a['sha256'][:16]}`"]) + " |")
    return "\n".join(lines) + "\n"


def regenerate(store: st.Store) -> dict:
    """Rewrite index.json and MODELS.md at the store root; returns the index."""
    index = build_index(store)
    store.write_bytes(json.dumps(index, indent=1, sort_keys=True).encode() + b"\n", "index.json")
    store.write_bytes(render_markdown(index).encode(), "MODELS.md")
    return index
