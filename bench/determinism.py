"""Cost of deterministic=true: training steps/s of the main job's model with and without
TensorFlow op determinism and fixed seeds, on the embedded synthetic set.

    python bench/determinism.py [--model mobilenet_v1_025] [--steps 300] [--rounds 3]
                                [--dataset-dir DIR] [--out build/bench/determinism.json]

Each run is a real `slim.train.train` in its own process (op determinism is a process-wide
switch), with the model's recipe and only `deterministic` differing.  Steps/s is read from
the run's history.jsonl between its first and last logged step, so start-up and the first
interval (graph building, kernel warm-up) are left out.  Runs alternate modes and the order
flips every round, so drifting load on a shared machine affects both alike.  Prints the
figures and writes the JSON.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_RUN = """
import json, sys
from slim import train
train.train(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], echo=lambda *_: None)
"""


def _dataset_dir() -> Path:
    """The embedded set exactly as the main job generates it, converted once."""
    from tasks.data import SYNTHETIC

    d = ROOT / "build" / "bench" / "determinism_tfrecords"
    if (d / "manifest.json").exists():
        return d
    from datasets.convert import convert
    from datasets.synthetic import make_mini_ilsvrc

    raw = d.parent / "determinism_raw"
    make_mini_ilsvrc(raw, **SYNTHETIC)
    convert(raw, d, train_shards=2, validation_shards=1, progress=False)
    return d


def _steps_per_sec(history: Path) -> float:
    rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    first, last = rows[0], rows[-1]
    return (last["step"] - first["step"]) / (last["time"] - first["time"])


def _one_run(cfg: dict, dataset_dir: Path, work: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               ZOOBUILD_PROGRESS="plain")
    subprocess.run([sys.executable, "-c", _RUN, json.dumps(cfg), str(dataset_dir), str(work)],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return _steps_per_sec(work / "history.jsonl")


def main(argv=None):
    from slim import recipes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=recipes.DEFAULT_MODEL)
    p.add_argument("--steps", type=int, default=300, help="steps per run")
    p.add_argument("--log-every", type=int, default=50, help="history interval (first is warm-up)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dataset-dir", default="", help="slim TFRecords; default: the embedded set")
    p.add_argument("--out", default=str(ROOT / "build" / "bench" / "determinism.json"))
    args = p.parse_args(argv)

    dataset_dir = Path(args.dataset_dir) if args.dataset_dir else _dataset_dir()
    base = {"model": args.model, "steps": args.steps, "log_every_n_steps": args.log_every,
            "save_summaries_secs": 3600, "save_interval_secs": 3600}
    resolved = recipes.resolve(base)
    modes = {"deterministic": True, "nondeterministic": False}
    per_round = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="zoobuild-determinism-") as tmp:
        for r in range(args.rounds):
            order = list(modes) if r % 2 == 0 else list(modes)[::-1]
            for mode in order:
                work = Path(tmp) / f"{mode}-{r}"
                rate = _one_run({**base, "deterministic": modes[mode]}, dataset_dir, work)
                per_round[mode].append(round(rate, 3))
            print(f"round {r + 1}/{args.rounds}: deterministic {per_round['deterministic'][-1]:.2f} "
                  f"steps/s, nondeterministic {per_round['nondeterministic'][-1]:.2f} steps/s",
                  flush=True)
    mean = {m: sum(v) / len(v) for m, v in per_round.items()}
    cost = 1.0 - mean["deterministic"] / mean["nondeterministic"]
    # the two runs of a round ran back to back: their ratio is the least disturbed by load
    round_costs = sorted(1.0 - d / n for d, n in zip(per_round["deterministic"],
                                                   per_round["nondeterministic"]))
    median_cost = round_costs[len(round_costs) // 2]
    import tensorflow as tf

    result = {"benchmark": "determinism", "model": args.model,
              "batch_size": resolved["batch_size"], "image_size": resolved["train_image_size"],
              "steps_per_run": args.steps, "rounds": args.rounds,
              "deterministic_steps_per_sec": round(mean["deterministic"], 3),
              "nondeterministic_steps_per_sec": round(mean["nondeterministic"], 3),
              "cost_fraction": round(cost, 4), "median_round_cost_fraction": round(median_cost, 4),
              "round_cost_fractions": [round(c, 4) for c in round_costs], "per_round": per_round,
              "dataset_dir": str(dataset_dir), "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg(), "tensorflow": tf.__version__,
              "machine": platform.machine()}
    print(f"{args.model} training, batch {resolved['batch_size']} at "
          f"{resolved['train_image_size']}px: deterministic {mean['deterministic']:.2f} steps/s, "
          f"nondeterministic {mean['nondeterministic']:.2f} steps/s -> deterministic costs "
          f"{100 * cost:.1f}% of steps/s (median of the rounds {100 * median_cost:.1f}%)")
    from zoobuild import atomic

    atomic.write_json(args.out, result, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
