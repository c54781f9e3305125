"""What a benchmark run is asked to do (BenchConfig), its checks, and its command-line form.

The defaults make a valid run (every validity flag true, p99.9 included) that stays cheap on a
small model: 1024 queries per phase, LoadGen's SingleStream minimum query count, which leaves
samples beyond the p99.9 order statistic, and at least one second per phase.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from zoobuild.errors import UserError

MODES = ("benchmark", "accuracy")
PERCENTILES = (50, 90, 99, 99.9)    # single-stream latency percentiles reported (and checked)
MIN_QUERIES = 1024                  # MLPerf LoadGen's SingleStream min_query_count
MIN_DURATION_S = 1.0

# fields the caller never sets on the command line: the model is positional, cpus is the
# placement planner's answer handed to pinned workers
_NOT_ON_CLI = ("model_path", "cpus")


@dataclass
class BenchConfig:
    model_path: str                 # SavedModel export dir (tf) or .onnx file (onnx)
    backend: str = "tf"
    mode: str = "benchmark"
    precision: str = "fp32"
    batch_size: int = 8
    warmup: int = 5
    min_duration: float = MIN_DURATION_S   # seconds per phase
    min_queries: int = MIN_QUERIES         # queries per phase
    steps: int = 0                  # > 0: exactly this many queries per phase (overrides both minimums)
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
        from slim.benchmark.backends import BACKENDS     # the registry (it imports this module)

        if self.backend not in BACKENDS:
            raise UserError(f"backend={self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.mode not in MODES:
            raise UserError(f"mode={self.mode!r}: expected one of {', '.join(MODES)}")
        for name in ("batch_size", "instances"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: expected >= 1")
        for name in ("warmup", "min_queries", "steps", "cores", "max_images", "min_duration"):
            if getattr(self, name) < 0:
                raise UserError(f"{name}={getattr(self, name)}: expected >= 0")
        if self.socket_id < -1:
            raise UserError(f"socket_id={self.socket_id}: expected a NUMA node number, or -1 for none")
        if self.mode == "accuracy" and not self.data_dir:
            raise UserError("mode=accuracy needs data_dir= (the validation shards)")
        if not Path(self.model_path).exists():
            raise UserError(f"model {self.model_path}: does not exist")
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, body: dict) -> "BenchConfig":
        return cls(**body)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def cli_args(cfg: BenchConfig) -> list[str]:
    """The options that make `python -m slim.benchmark MODEL OUT ...` run `cfg` (the docker runner)."""
    args = []
    for f in dataclasses.fields(BenchConfig):
        if f.name not in _NOT_ON_CLI:
            args += [_flag(f.name), str(getattr(cfg, f.name))]
    return args


def add_arguments(parser) -> None:
    """One option per settable field, typed by its default, named as cli_args writes it."""
    for f in dataclasses.fields(BenchConfig):
        if f.name not in _NOT_ON_CLI:
            parser.add_argument(_flag(f.name), type=type(f.default), default=f.default)
