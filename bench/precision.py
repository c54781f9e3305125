"""fp32 vs bf16 on this CPU, all in one run on the same seeded data (issue 14's targets):

  * training images/s of slim resnet_v1_50 and vgg_16 at fp32 and bf16 (the `doit train` step,
    slim/throughput.py), each precision at its tuned batch and thread pools
    (specs/tuned/<model>.yml, else --batch and TensorFlow's defaults; --same-batch: both at
    fp32's batch);
  * the peer: tf-keras applications ResNet50 / VGG16, same batch, same random data, fp32;
  * TF-backend inference (slim.benchmark, SavedModel) at fp32 and bf16, batch --infer-batch,
    with the ONNX int8 figure (slim.convert, calibrated on seeded inputs) beside them;
  * GFLOP/s of each training run against the same run's matmul peak per dtype (the better of
    numpy and TensorFlow for fp32; TensorFlow for bf16): the machine's practical peak.

    nice -n 10 .venv/bin/python bench/precision.py [--models resnet_v1_50,vgg_16] [--steps 5]
        [--skip-onnx] [--device gpu]

Training FLOPs are 3x the forward pass's (TensorFlow's profiler over the graph), the usual
forward + two backward matmuls estimate.  A figure is the best step of --steps after --warmup
(the least disturbed step on a shared machine).  Writes build/bench/precision.json.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KERAS = {"resnet_v1_50": "ResNet50", "vgg_16": "VGG16"}
TARGETS = {"bf16_over_fp32_training": 1.6, "ours_over_keras_fp32": 1.15, "fp32_of_peak": 0.90,
           "bf16_of_peak": 0.85, "bf16_over_fp32_inference": 1.5}


def matmul_peak(n: int = 4096, reps: int = 5) -> dict:
    """GFLOP/s of an n x n matmul: numpy fp32, TensorFlow fp32 and bf16 (best of reps)."""
    import numpy as np
    import tensorflow as tf

    flops = 2.0 * n ** 3
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)

    def best(fn):
        fn()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return flops / min(times) / 1e9

    out = {"n": n, "numpy_fp32": best(lambda: a @ b)}
    # the bf16 rewrite is process-wide once a bf16 run switched it on (slim.precision): off here,
    # or the "fp32" matmul measured after a bf16 run is a bf16 one (seen: fp32 481 -> 775)
    from slim import precision

    precision.enable_for_eager("fp32")
    for dtype in ("float32", "bfloat16"):
        ta, tb = tf.constant(a, dtype=dtype), tf.constant(b, dtype=dtype)
        mm = tf.function(lambda x, y: tf.linalg.matmul(x, y))
        out[f"tf_{dtype}"] = best(lambda: mm(ta, tb).numpy())
    out["peak_fp32"] = max(out["numpy_fp32"], out["tf_float32"])
    out["peak_bf16"] = out["tf_bfloat16"]
    return out


def forward_flops(model: str, batch: int) -> float:
    """Float operations of one forward pass of the slim net (TensorFlow's profiler)."""
    import slim.compat  # noqa: F401
    import tensorflow as tf

    from slim import nets

    v1 = tf.compat.v1
    size = nets.default_image_size(model)
    with tf.Graph().as_default() as g:
        nets.get_network_fn(model, 1001, is_training=False)(tf.zeros([batch, size, size, 3]))
        opts = v1.profiler.ProfileOptionBuilder(
            v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
        prof = v1.profiler.profile(g, options=opts, cmd="op")
    return float(prof.total_float_ops)


def keras_train(name: str, batch: int, steps: int, warmup: int) -> float:
    """images/s of tf-keras applications' `name` (random weights, RMSprop), same data as ours."""
    import numpy as np
    import tf_keras

    model = getattr(tf_keras.applications, name)(weights=None, classes=1001)
    model.compile(optimizer=tf_keras.optimizers.RMSprop(0.01),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=False))
    rng = np.random.default_rng(0)
    size = model.input_shape[1]
    x = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 1001, batch)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t)
    del model
    tf_keras.backend.clear_session()
    return batch / min(times)


def saved_model(model: str, out: Path) -> Path:
    """A SavedModel of the slim net with random weights and export.py's signature."""
    import slim.compat  # noqa: F401
    import tensorflow as tf

    from slim import nets

    v1 = tf.compat.v1
    size = nets.default_image_size(model)
    with tf.Graph().as_default():
        v1.set_random_seed(0)   # the same weights every run: the int8 gate's verdict is repeatable
        images = v1.placeholder(tf.float32, [None, size, size, 3], name="images")
        logits, _ = nets.get_network_fn(model, 1001, is_training=False)(images)
        logits = tf.identity(logits, name="logits")
        probs = tf.nn.softmax(logits, name="probabilities")
        classes = tf.argmax(logits, axis=1, name="classes")
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out / "saved_model"))
            sig = v1.saved_model.predict_signature_def(
                inputs={"images": images},
                outputs={"logits": logits, "probabilities": probs, "classes": classes})
            builder.add_meta_graph_and_variables(sess, [v1.saved_model.tag_constants.SERVING],
                                                 signature_def_map={"serving_default": sig})
            builder.save()
    (out / "export.json").write_text(json.dumps({
        "model": model, "input_name": "images", "input_shape": [None, size, size, 3],
        "input_dtype": "float32", "num_classes": 1001, "labels_offset": 0,
        "saved_model": "saved_model", "signature": "serving_default"}))
    return out


def infer(model_path: Path, backend: str, precision: str, batch: int, seconds: float) -> float:
    """Offline throughput (images/s) of slim.benchmark on the model, seeded synthetic inputs, in
    a fresh process as `doit benchmark` runs it: in this one, after the training graphs, TF bf16
    ran 37.0 and 37.8 images/s in both rounds; fresh processes 42-45 in five tries of six."""
    import subprocess

    from slim.benchmark import config

    cfg = config.BenchConfig(model_path=str(model_path), backend=backend, precision=precision,
                             batch_size=batch, min_duration=seconds, min_queries=8, warmup=2)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "slim.benchmark", str(model_path), tmp, "--no-chart",
                        *config.cli_args(cfg)], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        res = json.loads((Path(tmp) / "results.json").read_text())
    return float(res["offline"]["throughput_ips"])


def _summary(r: dict) -> dict:
    """Each target of issue 14 against this run's figures."""
    lines, checks = [], {}
    for model, row in r["training"].items():
        checks[f"{model} bf16/fp32 training"] = (row["bf16_over_fp32"], TARGETS["bf16_over_fp32_training"])
        checks[f"{model} fp32 of fp32 peak"] = (row["fp32"]["of_peak"], TARGETS["fp32_of_peak"])
        checks[f"{model} bf16 of bf16 peak"] = (row["bf16"]["of_peak"], TARGETS["bf16_of_peak"])
        if model in r["keras"]:
            checks[f"{model} ours/keras fp32"] = (r["keras"][model]["ours_over_keras"], TARGETS["ours_over_keras_fp32"])
    if r.get("inference"):
        checks["inference bf16/fp32 TF"] = (r["inference"]["bf16_over_fp32"], TARGETS["bf16_over_fp32_inference"])
    for name, (got, want) in checks.items():
        lines.append(f"target {name}: {got:.2f} (want >= {want}) {'met' if got >= want else 'NOT met'}")
    return {"lines": lines, "met": {k: v[0] >= v[1] for k, v in checks.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/precision.py")
    p.add_argument("--models", default="resnet_v1_50,vgg_16")
    p.add_argument("--batch", type=int, default=8, help="training batch when a model has no tuned one")
    p.add_argument("--infer-batch", type=int, default=8)
    p.add_argument("--infer-model", default="resnet_v1_50")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--infer-seconds", type=float, default=5.0)
    p.add_argument("--infer-rounds", type=int, default=2)
    p.add_argument("--skip-onnx", action="store_true")
    p.add_argument("--skip-keras", action="store_true")
    p.add_argument("--same-batch", action="store_true", help="bf16 at fp32's tuned batch, not its own")
    p.add_argument("--out", default=str(ROOT / "build" / "bench" / "precision.json"))
    a = p.parse_args(argv)

    from slim import throughput, tuning
    from zoobuild import atomic

    def say(text):
        print(text, flush=True)

    result = {"host": {"cores": os.cpu_count()}, "targets": TARGETS, "training": {}, "keras": {},
              "inference": {}}
    peak = matmul_peak()
    result["matmul"] = peak
    say(f"matmul {peak['n']}^2 GFLOP/s: numpy fp32 {peak['numpy_fp32']:.0f}, TF fp32 "
        f"{peak['tf_float32']:.0f}, TF bf16 {peak['tf_bfloat16']:.0f}")
    for model in filter(None, a.models.split(",")):
        # each precision at its own best-known batch (specs/tuned, as the model zoos publish
        # per precision); --same-batch: both at fp32's
        tuned = {c: tuning.settings(model, c, "training") for c in ("fp32", "bf16")}
        batches = {c: int(tuned[c].get("batch_size") or a.batch) for c in tuned}
        if a.same_batch:
            batches["bf16"] = batches["fp32"]
        batch = batches["fp32"]
        fwds = {c: forward_flops(model, b) for c, b in batches.items()}
        row = {"batch": batch, "batches": batches,
               "batch_from": {c: "tuned" if tuned[c].get("batch_size") else "--batch" for c in tuned},
               "train_gflop_per_step": {c: 3 * f / 1e9 for c, f in fwds.items()}}
        # and its tuned thread pools (0: TensorFlow's default, all cores for both pools)
        threads = {c: (int(tuned[c].get("intra_op_threads") or 0), int(tuned[c].get("inter_op_threads") or 0))
                   for c in tuned}
        row["threads"] = {c: {"intra": i, "inter": j} for c, (i, j) in threads.items()}
        runs = {c: throughput.Step(model, "training", batches[c], c, *threads[c]) for c in ("fp32", "bf16")}
        times = {c: [] for c in runs}
        for i in range(a.warmup + a.steps):   # alternate fp32 and bf16 steps: drifting load hits both
            for c, step in runs.items():
                t = step.run()
                if i >= a.warmup:
                    times[c].append(t)
        infos = {c: step.info for c, step in runs.items()}
        for step in runs.values():
            step.close()
        del runs, step
        gc.collect()   # two VGG-16 training graphs hold gigabytes: free them before the next
        for compute in ("fp32", "bf16"):
            got = throughput.summarize(infos[compute], times[compute])
            gflops = 3 * fwds[compute] / got["seconds_per_step"] / 1e9
            row[compute] = {"images_per_sec": got["images_per_sec"], "gflops": gflops,
                            "of_peak": gflops / peak[f"peak_{compute}"]}
            say(f"train {model} {compute} batch {batches[compute]} threads {threads[compute][0]}/{threads[compute][1]}: "
                f"{got['images_per_sec']:.2f} images/s, "
                f"{gflops:.0f} GFLOP/s = {row[compute]['of_peak']:.0%} of the {compute} matmul peak")
        row["bf16_over_fp32"] = row["bf16"]["images_per_sec"] / row["fp32"]["images_per_sec"]
        say(f"train {model}: bf16 / fp32 = {row['bf16_over_fp32']:.2f}x (target {TARGETS['bf16_over_fp32_training']}x)")
        result["training"][model] = row
        atomic.write_json(Path(a.out), result)   # what is measured so far survives a kill
        if not a.skip_keras and model in KERAS:
            ips = keras_train(KERAS[model], batch, a.steps, a.warmup)
            result["keras"][model] = {"name": KERAS[model], "batch": batch, "images_per_sec": ips,
                                      "ours_over_keras": row["fp32"]["images_per_sec"] / ips}
            say(f"keras {KERAS[model]} fp32 batch {batch}: {ips:.2f} images/s; ours / keras = "
                f"{result['keras'][model]['ours_over_keras']:.2f}x (target {TARGETS['ours_over_keras_fp32']}x)")
            atomic.write_json(Path(a.out), result)
            gc.collect()

    with tempfile.TemporaryDirectory() as tmp:
        export = saved_model(a.infer_model, Path(tmp) / "export")
        inf = {"model": a.infer_model, "batch": a.infer_batch}
        for _ in range(a.infer_rounds):   # alternate rounds, keep each precision's best
            for prec in ("fp32", "bf16"):
                ips = infer(export, "tf", prec, a.infer_batch, a.infer_seconds)
                inf[f"tf_{prec}"] = max(inf.get(f"tf_{prec}", 0.0), ips)
                say(f"infer {a.infer_model} TF {prec} batch {a.infer_batch}: {ips:.1f} images/s")
        inf["bf16_over_fp32"] = inf["tf_bf16"] / inf["tf_fp32"]
        result["inference"] = inf
        atomic.write_json(Path(a.out), result)
        if not a.skip_onnx:
            from slim import convert

            report = convert.convert(export, Path(tmp) / "onnx", precisions=("int8",),
                                     batch_size=a.infer_batch, progress=lambda *_: None)
            r = report["results"].get("int8") or {}
            if r.get("passed"):
                inf["onnx_int8"] = infer(Path(tmp) / "onnx" / r["file"], "onnx", "int8", a.infer_batch,
                                         a.infer_seconds)
                say(f"infer {a.infer_model} ONNX int8 batch {a.infer_batch}: {inf['onnx_int8']:.1f} images/s")
            else:
                inf["onnx_int8"] = None
                inf["onnx_int8_reason"] = r.get("reason")
                say(f"infer {a.infer_model} ONNX int8: not measured ({r.get('reason')})")
        result["inference"] = inf
        say(f"infer: TF bf16 / fp32 = {inf['bf16_over_fp32']:.2f}x (target {TARGETS['bf16_over_fp32_inference']}x)")

    again = matmul_peak()
    say(f"matmul again: numpy fp32 {again['numpy_fp32']:.0f}, TF fp32 {again['tf_float32']:.0f}, "
        f"TF bf16 {again['tf_bfloat16']:.0f} GFLOP/s")
    result["matmul_end"] = again
    for dtype in ("fp32", "bf16"):
        best = max(peak[f"peak_{dtype}"], again[f"peak_{dtype}"])
        result["matmul"][f"peak_{dtype}"] = best
        for model, row in result["training"].items():
            row[dtype]["of_peak"] = row[dtype]["gflops"] / best
    result["summary"] = _summary(result)
    for line in result["summary"]["lines"]:
        say(line)
    atomic.write_json(Path(a.out), result)
    say(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
