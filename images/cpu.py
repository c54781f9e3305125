"""CPU targets: host ISA detection and target -> compiler flags.

A *target* names the oldest CPU a build must run on.  Each target carries
the GCC/Clang flags that let the compiler use that CPU's instructions, the
Bazel ``--copt`` form of the same flags (for the TensorFlow recipe), the local
version label the wheel gets (``0.1.0+avx2``), and the ``/proc/cpuinfo``
feature flags a CPU must have to run the result.  ``native`` is resolved
against the host it is built on.

No imports beyond the standard library: task creators import this at load time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from zoobuild import machine
from zoobuild.errors import UserError

# Feature sets, cumulative; names as /proc/cpuinfo spells them.
_BASELINE = ("sse", "sse2")
_HASWELL = _BASELINE + ("ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "avx2", "fma", "bmi1", "bmi2",
                        "f16c", "movbe")
_SKYLAKE_AVX512 = _HASWELL + ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")
_ICELAKE_SERVER = _SKYLAKE_AVX512 + ("avx512_vnni", "avx512vbmi", "avx512_vbmi2", "avx512_bitalg",
                                     "avx512_vpopcntdq", "gfni", "vaes", "vpclmulqdq")
_SAPPHIRERAPIDS = _ICELAKE_SERVER + ("avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")

#: every feature some target requires: what `native` records of the host
KNOWN_FEATURES = frozenset(_SAPPHIRERAPIDS)


@dataclass(frozen=True)
class Target:
    name: str
    label: str                       # wheel local version label: 0.1.0+<label>
    cflags: tuple[str, ...]          # for gcc/clang
    required: frozenset[str]         # /proc/cpuinfo flags the code needs
    help: str = ""
    bazel: tuple[str, ...] = field(default=())

    @property
    def bazel_copts(self) -> tuple[str, ...]:
        return self.bazel or tuple(f"--copt={f}" for f in self.cflags if f != "-O3")

    def as_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "cflags": list(self.cflags),
                "bazel_copts": list(self.bazel_copts), "required": sorted(self.required)}


def _t(name, label, march, required, help):
    flags = ("-O3", f"-march={march}") + (("-mtune=generic",) if march == "x86-64" else ())
    return Target(name, label, flags, frozenset(required), help)


#: target name -> Target (the registry)
TARGETS: dict[str, Target] = {t.name: t for t in (
    _t("x86-64", "baseline", "x86-64", _BASELINE, "any x86-64 CPU (SSE2 only)"),
    _t("haswell", "avx2", "haswell", _HASWELL, "AVX2 + FMA (Intel 2013+, AMD Zen)"),
    _t("skylake-avx512", "avx512", "skylake-avx512", _SKYLAKE_AVX512, "AVX-512 F/CD/BW/DQ/VL"),
    _t("icelake-server", "avx512icl", "icelake-server", _ICELAKE_SERVER, "AVX-512 + VNNI, VBMI2, GFNI"),
    _t("sapphirerapids", "amx", "sapphirerapids", _SAPPHIRERAPIDS, "AVX-512 FP16/BF16 + AMX"),
)}
NATIVE = "native"
TARGET_NAMES = (NATIVE,) + tuple(TARGETS)
#: local label -> target, for reading a wheel's label back
BY_LABEL = {t.label: t for t in TARGETS.values()}


def host_features(cpuinfo: str | None = None) -> frozenset[str]:
    """CPU feature flags of this host (first `flags` line of /proc/cpuinfo).

    Env ZOOBUILD_CPU_FLAGS (space or comma separated) overrides, so tests can
    play an older CPU."""
    return machine.host_features(cpuinfo)


def best_target(features: frozenset[str] | None = None) -> Target:
    """The most capable named target the given (default: host) features run."""
    features = host_features() if features is None else features
    best = TARGETS["x86-64"]
    for t in TARGETS.values():
        if t.required <= features and len(t.required) > len(best.required):
            best = t
    return best


def resolve(name: str, features: frozenset[str] | None = None) -> Target:
    """Target for a `target=` value; `native` becomes -march=native with the host's features."""
    if name == NATIVE:
        features = host_features() if features is None else features
        return Target(NATIVE, "native", ("-O3", "-march=native"), frozenset(features & KNOWN_FEATURES),
                      "this host's CPU (-march=native)")
    try:
        return TARGETS[name]
    except KeyError:
        raise UserError(f"target={name!r} is not a known CPU target; expected one of "
                        f"{', '.join(TARGET_NAMES)}") from None


def missing_features(target: Target, features: frozenset[str] | None = None) -> list[str]:
    features = host_features() if features is None else features
    return sorted(target.required - features)


def check_host_runs(target: Target, features: frozenset[str] | None = None, what: str = "") -> None:
    """Raise UserError (one line) when the host lacks a feature the target needs."""
    missing = missing_features(target, features)
    if missing:
        best = best_target(features)
        raise UserError(f"{what or 'build'} for target {target.name} (+{target.label}) needs CPU features "
                        f"{', '.join(missing)} that this host lacks; use target={best.name} or lower")


#: either one runs bfloat16 natively (AVX-512 BF16: Cooper Lake, Zen 4; AMX: Sapphire Rapids+)
BF16_FEATURES = ("avx512_bf16", "amx_bf16")


def has_bf16(features: frozenset[str] | None = None) -> bool:
    features = host_features() if features is None else features
    return any(f in features for f in BF16_FEATURES)


def check_bf16(features: frozenset[str] | None = None, what: str = "compute=bf16") -> None:
    """Raise UserError (one line) when the host has no native bfloat16: emulation is refused."""
    if not has_bf16(features):
        raise UserError(f"{what} needs CPU feature {' or '.join(BF16_FEATURES)}, which this host "
                        "lacks (bfloat16 would be emulated, slower than fp32); use compute=fp32")
