"""What a run leaves behind: results.json (machine-readable, the validity of each flag
included), summary.txt (the same for people) and latency.png (matplotlib, Agg backend).
Every file is written whole or not at all (zoobuild.atomic)."""
from __future__ import annotations

import os
from pathlib import Path

from zoobuild.atomic import atomic_open, write_json, write_text

RESULTS, SUMMARY, CHART = "results.json", "summary.txt", "latency.png"


def host() -> dict:
    import platform

    return {"machine": platform.machine(), "python": platform.python_version(),
            "cpus_allowed": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count()}


def _validity_line(res: dict) -> str:
    bad = [k for k, v in res["validity"].items() if not v]
    if not bad:
        return "validity: ok (" + ", ".join(res["validity"]) + ")"
    checks = res.get("validity_checks", {})

    def why(k):
        c = checks.get(k)
        return f"{k} (need {c['need']:g}, have {c['have']:g})" if c else k
    return "validity: NOT MET: " + ", ".join(why(k) for k in bad)


def summary_text(res: dict) -> str:
    c = res["config"]
    lines = [f"model {c['model'] or c['model_path']}  backend {c['backend']}  precision {c['precision']}  "
             f"mode {c['mode']}  instances {c['instances']}"]
    if c["mode"] == "accuracy":
        lines.append(f"top-1 {res['top1']:.4f}  top-5 {res['top5']:.4f}  over {res['images']} images")
        return "\n".join(lines) + "\n"
    s, o = res["single_stream"], res["offline"]
    lat = s["latency_ms"]
    lines.append(f"single-stream (batch {s['query_batch']}, {s['queries']} queries) latency ms: " +
                 "  ".join(f"{k} {lat[k]:.3f}" for k in ("p50", "p90", "p99", "p99.9", "min", "mean", "max")))
    lines.append(f"offline (batch {o['batch']}, {o['queries']} queries): {o['throughput_ips']:.1f} images/s "
                 f"over {o['images']} images")
    lines.append(_validity_line(res))
    return "\n".join(lines) + "\n"


def chart(res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = res["config"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    title = f"{c['model'] or Path(c['model_path']).name} · {c['backend']} {c['precision']}"
    if c["mode"] == "accuracy":
        ax.bar(["top-1", "top-5"], [res["top1"], res["top5"]], color=["#4477aa", "#66ccee"])
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
    else:
        lat = res["latencies_ms"]
        ax.hist(lat, bins=50, color="#4477aa")
        for name, colour in (("p50", "#228833"), ("p90", "#ccbb44"), ("p99", "#ee6677"), ("p99.9", "#aa3377")):
            v = res["single_stream"]["latency_ms"][name]
            ax.axvline(v, color=colour, linestyle="--", label=f"{name} {v:.2f} ms")
        ax.set_xlabel("single-stream latency (ms)")
        ax.set_ylabel("queries")
        ax.legend()
        title += f" · offline {res['offline']['throughput_ips']:.0f} img/s"
    ax.set_title(title)
    fig.tight_layout()
    with atomic_open(out, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def write_results(res: dict, out_dir) -> None:
    write_json(Path(out_dir) / RESULTS, res)


def write_all(res: dict, out_dir, chart_png: bool = True) -> None:
    """results.json, summary.txt and (unless chart_png is false) latency.png in out_dir."""
    out_dir = Path(out_dir)
    if chart_png:        # model images carry no matplotlib: the host draws their chart
        chart(res, out_dir / CHART)
    write_text(out_dir / SUMMARY, summary_text(res))
    write_results(res, out_dir)
