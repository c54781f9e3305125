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
    if _savedmodel_top1(m, a) is not None:   # the eval at the artifact's precision (fp32 or bf16)
        return _savedmodel_top1(m, a), "eval"
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
            **({"gate": a["gate"]} if a.get("gate") else {}),
        })
    return rows


def _savedmodel_top1(m: dict, a: dict):
    """The eval's top-1 at the artifact's precision: a compute=bf16 eval also holds the fp32
    reference (the same checkpoint) its accuracy gate compared against."""
    if a.get("format") != "savedmodel":
        return None
    ev = m.get("eval") or {}
    if a.get("precision") == ev.get("compute", "fp32"):
        return ev.get("top1")
    ref = ev.get("reference") or {}
    return ref.get("top1") if ref.get("compute") == a.get("precision") else None


def _top1_cell(r: dict) -> str:
    ratio = (r.get("gate") or {}).get("ratio")   # a bf16 SavedModel's accuracy gate
    return _fmt(r["top1"]) + (f" (gate: {ratio:.1%} of fp32)" if ratio is not None else "")


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
                    "tuned": m.get("tuned") or {},
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
                        _top1_cell(r), _fmt(r["throughput"], "{:.1f}"),
                        _human_size(r["size"]) if r.get("size") is not None else "–",
                        r.get("top1_from") or "–", f"`{a['sha256'][:16]}`"]) + " |")
    return "\n".join(lines + _tuned_lines(index)) + "\n"


def _tuned_lines(index: dict) -> list[str]:
    """Best-known parameters of each model's latest publish that carries them."""
    cols = ("model", "precision", "mode", "batch", "intra/inter threads", "OMP_NUM_THREADS", "KMP_AFFINITY",
            "KMP_BLOCKTIME", "img/s")
    rows = []
    for name, entry in sorted(index["models"].items()):
        order = semver.sort_versions(entry["versions"])[::-1] + sorted(entry.get("channels", {}))
        tuned = next((a["tuned"] for v in order
                      for _, a in sorted((entry["versions"].get(v) or entry["channels"][v]).items())
                      if a.get("tuned")), {})
        for prec, modes in sorted(tuned.items()):
            for mode, t in sorted(modes.items()):
                rows.append("| " + " | ".join(map(str, (
                    name, prec, mode, t.get("batch_size"), f"{t.get('intra_op_threads')}/{t.get('inter_op_threads')}",
                    t.get("OMP_NUM_THREADS"), t.get("KMP_AFFINITY"), t.get("KMP_BLOCKTIME"),
                    _fmt(t.get("images_per_sec"), "{:.1f}")))) + " |")
    if not rows:
        return []
    return ["", "## Best-known parameters", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + rows


def regenerate(store: st.Store) -> dict:
    """Rewrite index.json and MODELS.md at the store root; returns the index."""
    index = build_index(store)
    store.write_bytes(json.dumps(index, indent=1, sort_keys=True).encode() + b"\n", "index.json")
    store.write_bytes(render_markdown(index).encode(), "MODELS.md")
    return index
