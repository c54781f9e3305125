# Python packages of this layer from the local wheelhouse, installed into a prefix in an
# `install` stage and merged into the parent's /opt/venv: one layer, no wheel copies.
FROM ${FROM_IMAGE} AS install
COPY wheelhouse/ /wheelhouse/
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --no-deps --require-hashes \
      --disable-pip-version-check --find-links /wheelhouse --prefix /opt/layer \
      -r /wheelhouse/requirements.txt

FROM ${FROM_IMAGE}
COPY --from=install /opt/layer/ /opt/venv/
