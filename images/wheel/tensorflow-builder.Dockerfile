# Builder for the real TensorFlow wheel. Needs network while it is built and
# while the wheel is built (Bazel fetches TensorFlow's third-party sources).
# Base: zoobuild/builder-base:bookworm (gcc 12, python3.11-dev); adds clang,
# git, patchelf and Bazelisk, which downloads the Bazel version that the
# TensorFlow checkout's .bazelversion names.
ARG BASE=zoobuild/builder-base:bookworm
FROM ${BASE}
ARG BAZELISK_VERSION=v1.25.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang lld llvm git curl unzip zip patchelf \
        python3-numpy python3-packaging python3-requests \
 && rm -rf /var/lib/apt/lists/* \
 && curl -fsSL -o /usr/local/bin/bazel \
        https://github.com/bazelbuild/bazelisk/releases/download/${BAZELISK_VERSION}/bazelisk-linux-amd64 \
 && chmod +x /usr/local/bin/bazel
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 HOME=/cache/home
WORKDIR /work
