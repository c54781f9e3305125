# Builder for small native wheels (zoobuild-native and friends).
# The base is made offline by images/base.py (debootstrap + the builder package
# list in the recipe: build-essential, python3-dev, setuptools, wheel, ccache), so this
# file only checks the toolchain and sets the work directory. Built with no network.
ARG BASE=zoobuild/builder-base:bookworm
FROM ${BASE}
RUN gcc --version >/dev/null && objdump --version >/dev/null && ccache --version >/dev/null \
 && python3 -c "import setuptools, wheel, sysconfig; print(sysconfig.get_config_var('SOABI'))"
ENV PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /work
