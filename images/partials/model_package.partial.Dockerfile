# The model package: <name>.tar.gz with one top-level directory <name>/ (slim/, datasets/,
# quickstart/ scripts, model.json).  ADD unpacks a local tar in one layer.
ARG PACKAGE_NAME
ARG MODEL_WORKSPACE=/workspace
ARG MODEL_NAME
ARG PRECISION=fp32
ARG MODE=training
ADD packages/${PACKAGE_NAME}.tar.gz ${MODEL_WORKSPACE}/
ENV MODEL_NAME=${MODEL_NAME} \
    PRECISION=${PRECISION} \
    MODE=${MODE} \
    PACKAGE_DIR=${MODEL_WORKSPACE}/${PACKAGE_NAME} \
    PYTHONPATH=${MODEL_WORKSPACE}/${PACKAGE_NAME}
WORKDIR ${MODEL_WORKSPACE}/${PACKAGE_NAME}
