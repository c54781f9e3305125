"""Inference benchmarks for exported and converted models (after the zoo's launch_benchmark
and MLPerf LoadGen's scenarios).

    results = run(BenchConfig(model_path=..., backend="onnx", mode="benchmark"), out_dir)

* mode=benchmark: single-stream latency (one query in flight; p50/p90/p99/p99.9, min,
  mean, max) and offline throughput (images/s at `batch_size`), after `warmup` queries,
  each phase running until both `min_duration` seconds and `min_queries` queries are
  reached (or exactly `steps` queries when steps > 0).
* mode=accuracy: top-1/top-5 over the validation shards through the data set reader.
* Inputs are seeded synthetic images unless `data_dir` is given.
* Backends (name -> class): `tf` (the SavedModel's serving signature) and `onnx`
  (onnxruntime on a converted file).
* CPU placement: `socket_id`, `cores` (per instance) and `instances` become a cpu list per
  instance, intra-op threads = cores, inter-op = 1, and a pinning prefix (numactl when
  present and a socket is named, else taskset).  Pinned or multi-instance runs start
  one worker process per instance and merge their results.

Writes results.json, summary.txt and latency.png (matplotlib, Agg backend).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from zoobuild.errors import UserError

PERCENTILES = (50, 90, 99, 99.9)
MODES = ("benchmark", "accuracy")


@dataclass
class BenchConfig:
    model_path: str                 # SavedModel export dir (tf) or .onnx file (onnx)
    backend: str = "tf"
    mode: str = "benchmark"
    precision: str = "fp32"
    batch_size: int = 8
    warmup: int = 5
    min_duration: float = 2.0       # seconds per phase
    min_queries: int = 50
    steps: int = 0                  # > 0: exactly this many queries per phase (overrides duration)
    data_dir: str = ""              # empty: synthetic seeded inputs
    max_images: int = 0             # accuracy mode: stop after this many (0 = all)
    labels_offset: int = 0          # model class = data set label - offset (export.json)
    preprocessing: str = ""         # slim preprocessing name for real data (export.json); empty: reader default
    seed: int = 0
    socket_id: int = -1             # -1: no socket binding
    cores: int = 0                  # cores per instance; 0: leave placement alone
    instances: int = 1
    cpus: list = field(default_factory=list)    # filled by the placement planner for workers
    model: str = ""                 # a name for reports

    def check(self) -> "BenchConfig":
        if self.backend not in BACKENDS:
            raise UserError(f"backend={self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.mode not in MODES:
            raise UserError(f"mode={self.mode!r}: expected one of {', '.join(MODES)}")
        for name in ("batch_size", "instances"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: expected >= 1")
        for name in ("warmup", "min_queries", "steps", "cores", "max_images"):
            if getattr(self, name) < 0:
                raise UserError(f"{name}={getattr(self, name)}: expected >= 0")
        if self.mode == "accuracy" and not self.data_dir:
            raise UserError("mode=accuracy needs data_dir= (the validation shards)")
        if not Path(self.model_path).exists():
            raise UserError(f"model {self.model_path}: does not exist")
        return self


# ---------------------------------------------------------------- backends

class TFBackend:
    """The SavedModel's serving_default, called eagerly (a concrete function: graph execution)."""

    def __init__(self, cfg: BenchConfig, threads: int = 0):
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        from slim import convert

        self._tf = tf
        self._loaded, self._fn = convert.load_serving(convert.find_saved_model(cfg.model_path))
        sig = convert.signature_of(self._fn)
        self.hw = convert.input_hw(sig, convert.export_info(cfg.model_path))
        self.fixed_batch = sig["inputs"]["images"]["shape"][0]
        self.dtype = "float32"

    def prepare(self, images):
        return self._tf.constant(images)

    def predict(self, x):
        return self._fn(images=x)

    def scores(self, out):
        return (out["probabilities"] if "probabilities" in out else out["logits"]).numpy()


class ONNXBackend:
    """onnxruntime on the CPU execution provider."""

    def __init__(self, cfg: BenchConfig, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(cfg.model_path), opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.nchw = inp.shape[1] == 3 and inp.shape[-1] != 3
        h, w = (inp.shape[2], inp.shape[3]) if self.nchw else (inp.shape[1], inp.shape[2])
        self.hw = (int(h), int(w))
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.dtype = "float16" if "float16" in inp.type else "float32"
        self.outputs = [o.name for o in self.session.get_outputs()]
        self._score = "probabilities" if "probabilities" in self.outputs else "logits"

    def prepare(self, images):
        import numpy as np

        x = images.transpose(0, 3, 1, 2) if self.nchw else images
        return {self.input_name: np.ascontiguousarray(x, dtype=self.dtype)}

    def predict(self, feed):
        return self.session.run(None, feed)

    def scores(self, out):
        return out[self.outputs.index(self._score)]


BACKENDS = {"tf": TFBackend, "onnx": ONNXBackend}


# ---------------------------------------------------------------- placement

def socket_cpus(socket_id: int) -> list[int]:
    """CPUs of a NUMA node (socket), or every CPU this process may use when -1."""
    allowed = sorted(os.sched_getaffinity(0))
    if socket_id < 0:
        return allowed
    path = Path(f"/sys/devices/system/node/node{socket_id}/cpulist")
    if not path.exists():
        nodes = sorted(p.name for p in Path("/sys/devices/system/node").glob("node[0-9]*"))
        raise UserError(f"socket_id={socket_id}: no such NUMA node; have {', '.join(nodes) or 'none'}")
    return [c for c in parse_cpulist(path.read_text()) if c in allowed]


def parse_cpulist(text: str) -> list[int]:
    out = []
    for part in text.strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def plan_placement(cfg: BenchConfig, available: list[int] | None = None) -> list[list[int]]:
    """One cpu list per instance: consecutive slices of `cores` cpus of the chosen socket."""
    available = socket_cpus(cfg.socket_id) if available is None else available
    per = cfg.cores or max(1, len(available) // cfg.instances)
    need = per * cfg.instances
    if need > len(available):
        raise UserError(f"cores={per} x instances={cfg.instances} needs {need} cpus; "
                        f"socket {cfg.socket_id if cfg.socket_id >= 0 else '(any)'} has {len(available)}")
    return [available[i * per:(i + 1) * per] for i in range(cfg.instances)]


def _numactl(cpus, socket_id):
    cmd = ["numactl", f"--physcpubind={','.join(map(str, cpus))}"]
    return cmd + ([f"--membind={socket_id}"] if socket_id >= 0 else [])


def _taskset(cpus, socket_id):
    return ["taskset", "-c", ",".join(map(str, cpus))]


PINNERS = {"numactl": _numactl, "taskset": _taskset}


def pin_prefix(cpus: list[int], socket_id: int, which=shutil.which) -> list[str]:
    """The command prefix that pins a worker: numactl (memory binding too) when a socket is
    named and numactl exists, taskset otherwise."""
    order = ("numactl", "taskset") if socket_id >= 0 else ("taskset", "numactl")
    for name in order:
        if which(name):
            return PINNERS[name](cpus, socket_id)
    raise UserError("CPU pinning needs numactl or taskset on PATH (apt-get install numactl util-linux)")


def needs_workers(cfg: BenchConfig) -> bool:
    return cfg.instances > 1 or cfg.cores > 0 or cfg.socket_id >= 0


# ---------------------------------------------------------------- measurement

def percentiles(lat_ms) -> dict:
    import numpy as np

    a = np.asarray(lat_ms, dtype="float64")
    if not a.size:
        return {}
    out = {f"p{p:g}": float(np.percentile(a, p, method="higher")) for p in PERCENTILES}
    out.update(min=float(a.min()), mean=float(a.mean()), max=float(a.max()), count=int(a.size))
    return out


def _input_pool(cfg: BenchConfig, hw, batch: int, n: int = 4):
    """A few input batches, cycled by the timed loops (input generation stays out of the timing)."""
    from slim import convert

    if cfg.data_dir:
        batches = convert.reader_batches(cfg.data_dir, "validation", batch, hw, n, preprocessing=cfg.preprocessing)
        if batches:
            return batches
    return [convert.seeded_inputs(batch, *hw, seed=cfg.seed + i) for i in range(n)]


def timed_loop(predict, feeds, *, warmup: int, min_duration: float, min_queries: int, steps: int):
    """One query in flight at a time; returns (latencies in ns, wall seconds).

    The loop body is a clock read, the call, a clock read and an append: that is the
    whole harness overhead bench/harness.py measures against a bare loop.
    """
    clock = time.perf_counter_ns
    nfeeds = len(feeds)
    for i in range(warmup):
        predict(feeds[i % nfeeds])
    lat = []
    append = lat.append
    if steps:
        start = clock()
        for i in range(steps):
            t0 = clock()
            predict(feeds[i % nfeeds])
            append(clock() - t0)
        return lat, (clock() - start) / 1e9
    deadline = min_duration * 1e9
    start = clock()
    i = 0
    while True:
        t0 = clock()
        predict(feeds[i % nfeeds])
        t1 = clock()
        append(t1 - t0)
        i += 1
        if i >= min_queries and t1 - start >= deadline:
            break
    return lat, (clock() - start) / 1e9


def measure(cfg: BenchConfig, backend) -> dict:
    """Single-stream then offline, in this process."""
    fixed = backend.fixed_batch
    stream_batch = fixed or 1
    offline_batch = fixed or cfg.batch_size
    loop = dict(warmup=cfg.warmup, min_duration=cfg.min_duration, min_queries=cfg.min_queries,
                steps=cfg.steps)
    feeds = [backend.prepare(b) for b in _input_pool(cfg, backend.hw, stream_batch)]
    lat, wall = timed_loop(backend.predict, feeds, **loop)
    single = {"query_batch": stream_batch, "latency_ms": percentiles([x / 1e6 for x in lat]),
              "wall_s": wall, "queries": len(lat)}
    feeds = [backend.prepare(b) for b in _input_pool(cfg, backend.hw, offline_batch)]
    olat, owall = timed_loop(backend.predict, feeds, **loop)
    offline = {"batch": offline_batch, "queries": len(olat), "images": len(olat) * offline_batch,
               "wall_s": owall, "throughput_ips": len(olat) * offline_batch / owall if owall else 0.0,
               "batch_latency_ms": percentiles([x / 1e6 for x in olat])}
    valid = {"min_duration_met": cfg.steps > 0 or (wall >= cfg.min_duration and owall >= cfg.min_duration),
             "min_queries_met": len(lat) >= min(cfg.min_queries, cfg.steps or cfg.min_queries),
             "p99.9_has_1000_samples": len(lat) >= 1000}
    return {"single_stream": single, "offline": offline, "validity": valid,
            "latencies_ms": [x / 1e6 for x in lat]}


def accuracy(cfg: BenchConfig, backend) -> dict:
    """top-1/top-5 over the validation split; the reader subtracts labels_offset."""
    import numpy as np

    from slim import convert

    batch = backend.fixed_batch or cfg.batch_size
    seen = top1 = top5 = 0
    t0 = time.perf_counter()
    for images, labels in convert.iter_batches(cfg.data_dir, "validation", batch, backend.hw,
                                               preprocessing=cfg.preprocessing,
                                               labels_offset=cfg.labels_offset):
        n = len(images)
        if n < batch:       # fixed-batch models: pad the last batch, score only the real rows
            images = np.concatenate([images, np.repeat(images[-1:], batch - n, axis=0)])
        scores = np.asarray(backend.scores(backend.predict(backend.prepare(images))))[:n]
        top = np.argsort(-scores, axis=1)[:, :5]
        top1 += int(np.sum(top[:, 0] == labels))
        top5 += int(np.sum(np.any(top == labels[:, None], axis=1)))
        seen += n
        if cfg.max_images and seen >= cfg.max_images:
            break
    if not seen:
        raise UserError(f"data_dir={cfg.data_dir}: the reader gave no validation images")
    return {"images": seen, "top1": top1 / seen, "top5": top5 / seen, "wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------- orchestration

def _host() -> dict:
    import platform

    return {"machine": platform.machine(), "python": platform.python_version(),
            "cpus_allowed": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count()}


def run_in_process(cfg: BenchConfig) -> dict:
    threads = len(cfg.cpus) if cfg.cpus else 0
    backend = BACKENDS[cfg.backend](cfg, threads=threads)
    body = measure(cfg, backend) if cfg.mode == "benchmark" else accuracy(cfg, backend)
    body["threads"] = {"intra_op": threads or "default", "inter_op": 1 if threads else "default"}
    body["cpus"] = cfg.cpus or sorted(os.sched_getaffinity(0))
    return body


def run_workers(cfg: BenchConfig, workdir: Path) -> dict:
    """One pinned worker process per instance, started together; results merged."""
    plans = plan_placement(cfg)
    procs = []
    for i, cpus in enumerate(plans):
        wcfg = dataclasses.replace(cfg, instances=1, cpus=cpus)
        cfg_path, out_path = workdir / f"worker{i}.config.json", workdir / f"worker{i}.json"
        cfg_path.write_text(json.dumps(dataclasses.asdict(wcfg)))
        cmd = pin_prefix(cpus, cfg.socket_id) + [sys.executable, "-m", "slim.benchmark", "--worker",
                                                  str(cfg_path), str(out_path)]
        env = dict(os.environ, OMP_NUM_THREADS=str(len(cpus)), TF_CPP_MIN_LOG_LEVEL="2")
        procs.append((cmd, out_path, subprocess.Popen(cmd, env=env, cwd=Path(__file__).resolve().parent.parent,
                                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    parts = []
    for cmd, out_path, p in procs:
        log, _ = p.communicate()
        if p.returncode != 0 or not out_path.exists():
            tail = (log or "").strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"benchmark worker `{' '.join(cmd[:4])} ...` failed: {tail[0]}")
        part = json.loads(out_path.read_text())
        part["command"] = cmd
        parts.append(part)
    return merge(cfg, parts)


def merge(cfg: BenchConfig, parts: list[dict]) -> dict:
    if cfg.mode == "accuracy":
        return {**parts[0], "instances": parts}
    lat = [x for p in parts for x in p["latencies_ms"]]
    single = dict(parts[0]["single_stream"], latency_ms=percentiles(lat),
                  queries=sum(p["single_stream"]["queries"] for p in parts))
    offline = dict(parts[0]["offline"],
                   throughput_ips=sum(p["offline"]["throughput_ips"] for p in parts),
                   images=sum(p["offline"]["images"] for p in parts))
    valid = {k: all(p["validity"][k] for p in parts) for k in parts[0]["validity"]}
    return {"single_stream": single, "offline": offline, "validity": valid, "latencies_ms": lat,
            "instances": [{k: p[k] for k in ("cpus", "threads", "command", "offline", "single_stream")}
                          for p in parts]}


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
    lines.append(f"offline (batch {o['batch']}): {o['throughput_ips']:.1f} images/s "
                 f"over {o['images']} images")
    bad = [k for k, v in res["validity"].items() if not v]
    lines.append("validity: " + ("ok" if not bad else "NOT MET: " + ", ".join(bad)))
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
    fig.savefig(out)
    plt.close(fig)


def run(cfg: BenchConfig, out_dir, chart_png: bool = True) -> dict:
    """Benchmark or score `cfg.model_path`; writes results.json, summary.txt, latency.png."""
    cfg.check()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if needs_workers(cfg):
        body = run_workers(cfg, out_dir)
    else:
        body = run_in_process(cfg)
    res = {"config": dataclasses.asdict(cfg), "host": _host(), **body}
    if chart_png:        # model images carry no matplotlib: the host draws their chart
        chart(res, out_dir / "latency.png")
    (out_dir / "summary.txt").write_text(summary_text(res))
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(res, indent=1, sort_keys=True))
    os.replace(tmp, out_dir / "results.json")
    return res


# ---------------------------------------------------------------- where it runs (name -> function)

def model_image_tag(model: str) -> str:
    """The model's inference image (training image when the specs have none)."""
    from images.build import model_image_tag as tag_for

    errors = []
    for mode in ("inference", "training"):
        try:
            return tag_for(model, "fp32", mode)
        except UserError as err:
            errors.append(str(err))
    raise UserError(errors[0])


def _cli_args(cfg: BenchConfig) -> list[str]:
    args = []
    for f in dataclasses.fields(BenchConfig):
        if f.name in ("model_path", "cpus"):
            continue
        args += [f"--{f.name.replace('_', '-')}", str(getattr(cfg, f.name))]
    return args


def run_in_image(cfg: BenchConfig, out_dir, image: str | None = None, client=None, echo=print) -> dict:
    """The same benchmark inside the model's image: repository, model and data mounted read-only
    at their host paths, out_dir read-write, no network; returns results.json's content."""
    cfg.check()
    root = Path(__file__).resolve().parent.parent
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    image = image or model_image_tag(cfg.model or "vgg_16")
    if client is None:
        from images.engine import client as docker_client
        client = docker_client()
    try:
        image_id = client.images.get(image).id
    except Exception:
        raise UserError(f"image {image} is not built; run `doit images`") from None
    model = Path(cfg.model_path).resolve()
    mounts = {str(root): "ro", str(model if model.is_dir() else model.parent): "ro", str(out_dir): "rw"}
    if cfg.data_dir:
        mounts.setdefault(str(Path(cfg.data_dir).resolve()), "ro")
    from images.engine import run_to_completion

    status, lines = run_to_completion(
        client, image, ["python3", "-m", "slim.benchmark", str(model), str(out_dir), "--no-chart"] + _cli_args(cfg),
        echo=echo, network_mode="none", working_dir=str(root),
        volumes={h: {"bind": h, "mode": m} for h, m in mounts.items()},
        environment={"LOCAL_USER_ID": str(os.getuid()), "LOCAL_GROUP_ID": str(os.getgid()),
                     "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    if status != 0 or not (out_dir / "results.json").exists():
        raise UserError(f"benchmark in {image} exited with status {status}: {(lines or ['no output'])[-1]}")
    res = json.loads((out_dir / "results.json").read_text())
    res["runner"] = {"name": "docker", "image": image, "image_id": image_id}
    (out_dir / "results.json").write_text(json.dumps(res, indent=1, sort_keys=True))
    chart(res, out_dir / "latency.png")
    return res


def run_local(cfg: BenchConfig, out_dir, echo=print) -> dict:
    res = run(cfg, out_dir)
    res["runner"] = {"name": "local"}
    (Path(out_dir) / "results.json").write_text(json.dumps(res, indent=1, sort_keys=True))
    return res


RUNNERS = {"local": run_local, "docker": run_in_image}


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--worker"]:          # one pinned instance, started by run_workers
        cfg = BenchConfig(**json.loads(Path(argv[1]).read_text()))
        body = run_in_process(cfg)
        Path(argv[2]).write_text(json.dumps(body))
        return 0
    ap = argparse.ArgumentParser(prog="python -m slim.benchmark", description=__doc__.split("\n")[0])
    ap.add_argument("model_path")
    ap.add_argument("out_dir")
    ap.add_argument("--no-chart", action="store_true", help="skip latency.png (no matplotlib)")
    for f in dataclasses.fields(BenchConfig):
        if f.name in ("model_path", "cpus"):
            continue
        ap.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    a = vars(ap.parse_args(argv))
    out_dir = a.pop("out_dir")
    chart_png = not a.pop("no_chart")
    try:
        res = run(BenchConfig(**a), out_dir, chart_png=chart_png)
    except UserError as err:
        print(f"zoobuild: {err}", file=sys.stderr)
        return 2
    print(summary_text(res), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
