"""Inference benchmarks for exported and converted models (after the zoo's launch_benchmark
and MLPerf LoadGen's scenarios).

    from slim import benchmark
    res = benchmark.run(benchmark.BenchConfig(model_path=..., backend="onnx"), out_dir)
    python -m slim.benchmark MODEL OUT_DIR --backend onnx

One concern per module:

    config       BenchConfig: what to run, its checks, its command-line form
    backends     tf (the SavedModel's serving signature) and onnx (onnxruntime), name -> class
    placement    socket_id/cores/instances -> cpu lists, numactl/taskset prefixes
    measurement  single-stream and offline timed loops, percentiles, accuracy mode
    validity     the run's validity flags (query counts, durations, samples per percentile)
    workers      in this process or one pinned worker process per instance, merged
    report       results.json, summary.txt, latency.png
    runners      local or docker (the caller names the image), name -> function
    cli          python -m slim.benchmark
"""
from slim.benchmark.backends import BACKENDS, ONNXBackend, TFBackend
from slim.benchmark.config import MIN_DURATION_S, MIN_QUERIES, MODES, PERCENTILES, BenchConfig
from slim.benchmark.measurement import accuracy, input_pool, measure, percentiles, timed_loop
from slim.benchmark.placement import needs_workers, parse_cpulist, pin_prefix, plan_placement, socket_cpus
from slim.benchmark.report import summary_text
from slim.benchmark.runners import RUNNERS, run, run_in_image, run_local
from slim.benchmark.validity import samples_needed

__all__ = ["BACKENDS", "ONNXBackend", "TFBackend", "MIN_DURATION_S", "MIN_QUERIES", "MODES", "PERCENTILES",
           "BenchConfig", "accuracy", "input_pool", "measure", "percentiles", "timed_loop", "needs_workers",
           "parse_cpulist", "pin_prefix", "plan_placement", "socket_cpus", "summary_text", "RUNNERS", "run",
           "run_in_image", "run_local", "samples_needed"]
