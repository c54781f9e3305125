"""`python -m slim.convert EXPORT_DIR OUT_DIR [--precisions fp32,fp16,int8] [--data-dir TFRECORDS]`.

Exit status: 0 when every precision passed, 1 when one was rejected, 2 for bad input."""
from __future__ import annotations

import argparse
import json
import sys

from zoobuild.errors import UserError


def main(argv=None) -> int:
    from slim.convert.pipeline import convert

    ap = argparse.ArgumentParser(prog="python -m slim.convert",
                                 description="SavedModel -> ONNX fp32/fp16/int8 behind an accuracy gate")
    ap.add_argument("export_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--nchw", action="store_true")
    ap.add_argument("--no-keep-io-types", action="store_true")
    ap.add_argument("--data-dir", default="", help="TFRecords: validation split for the gate, train for calibration")
    ap.add_argument("--samples", type=int, default=None, help="gate images (default: 1000 labelled or 32 seeded)")
    ap.add_argument("--isolate", choices=("auto", "yes", "no"), default="auto",
                    help="one process per step (auto: for models with >= 64 MiB of weights)")
    a = ap.parse_args(argv)
    try:
        report = convert(a.export_dir, a.out_dir, precisions=a.precisions.split(","),
                         batch_size=a.batch_size, opset=a.opset, nchw=a.nchw,
                         keep_io_types=not a.no_keep_io_types, data_dir=a.data_dir, samples=a.samples,
                         isolate={"auto": "auto", "yes": True, "no": False}[a.isolate])
    except UserError as err:
        print(f"zoobuild: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"passed": report["passed"], "rejected": report["rejected"]}))
    return 0 if not report["rejected"] else 1
