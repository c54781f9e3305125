"""`python -m slim.benchmark MODEL OUT_DIR [--backend onnx --min-queries 1024 ...]`: one run
here, its summary on stdout; exit 0, or 2 with one line on stderr for bad input.
`--worker CONFIG OUT` is the pinned-instance entry that workers.run_workers starts."""
from __future__ import annotations

import argparse
import sys

from slim.benchmark import report, runners, workers
from slim.benchmark.config import BenchConfig, add_arguments
from zoobuild.errors import cli_main


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m slim.benchmark",
                                 description="Latency/throughput (or top-1/top-5) of a SavedModel "
                                             "or an ONNX file; writes results.json, summary.txt, latency.png.")
    ap.add_argument("model_path", help="SavedModel export dir (--backend tf) or .onnx file (--backend onnx)")
    ap.add_argument("out_dir")
    ap.add_argument("--no-chart", action="store_true", help="skip latency.png (no matplotlib)")
    add_arguments(ap)
    return ap


@cli_main
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return workers.worker_main(argv[1], argv[2])
    a = vars(parser().parse_args(argv))
    out_dir = a.pop("out_dir")
    chart_png = not a.pop("no_chart")
    res = runners.run(BenchConfig(**a), out_dir, chart_png=chart_png)
    print(report.summary_text(res), end="")
    return 0
