# TensorFlow from the local wheelhouse (the compiled wheel of `doit build_wheel` when selected,
# else the pinned tensorflow-cpu) into the venv /opt/venv, plus gosu for the entrypoint.
# Two stages: the wheels are COPYed into the `install` stage only, and the final image takes
# /opt/venv from it, so no layer of the image holds a copy of the ~250 MB of wheels.
FROM ${FROM_IMAGE} AS install
COPY wheelhouse/ /wheelhouse/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --no-deps --require-hashes \
      --disable-pip-version-check --find-links /wheelhouse -r /wheelhouse/requirements.txt \
 && mkdir /tmp/debs && for deb in /wheelhouse/*.deb; do dpkg-deb -x "$deb" /tmp/debs; done \
 && install -m 0755 /tmp/debs/usr/sbin/gosu /opt/venv/bin/gosu

FROM ${FROM_IMAGE}
COPY --from=install /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2
