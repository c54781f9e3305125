# The image-recognition category: what every image-classification model shares.
ARG CATEGORY=image-recognition
ENV ZOO_CATEGORY=${CATEGORY} \
    DATASET_DIR=/dataset \
    OUTPUT_DIR=/output
RUN mkdir -p /dataset /output && chmod 1777 /output
