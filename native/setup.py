"""Build script of the repo's own small native wheel.

The recipe's build step sets, through the environment:
  ZOOBUILD_CFLAGS          target flags (e.g. -O3 -march=haswell)
  ZOOBUILD_LOCAL_VERSION   local version label (e.g. avx2) -> 0.1.0+avx2
  ZOOBUILD_TARGET          target name, recorded in zoobuild_isa.json
  ZOOBUILD_ISA_REQUIRED    CPU features the code needs, recorded for the runtime check
"""
import json
import os
import shlex
from pathlib import Path

from setuptools import Extension, setup

VERSION = "0.1.0"
HERE = Path(__file__).resolve().parent

cflags = shlex.split(os.environ.get("ZOOBUILD_CFLAGS", "-O3 -march=x86-64 -mtune=generic"))
# Reassociation lets the vectoriser split the dot-product reduction into lanes;
# no NaN/Inf-changing flags (no -ffast-math).
cflags += ["-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math", "-fno-math-errno"]
label = os.environ.get("ZOOBUILD_LOCAL_VERSION", "")
version = f"{VERSION}+{label}" if label else VERSION

(HERE / "zoobuild_native" / "zoobuild_isa.json").write_text(json.dumps({
    "target": os.environ.get("ZOOBUILD_TARGET", "x86-64"),
    "label": label,
    "cflags": " ".join(cflags),
    "required": sorted(os.environ.get("ZOOBUILD_ISA_REQUIRED", "").split()),
}, indent=1) + "\n")

setup(
    name="zoobuild-native",
    version=version,
    description="zoobuild's small native kernels (dot, saxpy) compiled for one CPU target",
    packages=["zoobuild_native"],
    package_data={"zoobuild_native": ["zoobuild_isa.json"]},
    ext_modules=[Extension("zoobuild_native._kernels", ["zoobuild_native/_kernels.c"],
                           extra_compile_args=cflags)],
    python_requires=">=3.8",
    zip_safe=False,
)
