# syntax=docker/dockerfile:1
# prescient onboard image: runtime dependencies only (no torch), onnxruntime-gpu.
#
# Python packages come from a wheelhouse built on the host (`make docker-smoke` builds it with
# `pip wheel`), because the build has no package index. BASE_IMAGE must provide python3 (>= 3.10)
# with venv; the default is NVIDIA's CUDA runtime image so onnxruntime-gpu finds CUDA/cuDNN.
ARG BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY wheelhouse/ /wheelhouse/
COPY pyproject.toml README.md ./
COPY bus/ bus/
COPY sim_sensors/ sim_sensors/
COPY service/ service/
COPY models/ models/
COPY benchmarks/ benchmarks/
RUN python3 -m venv /opt/prescient \
 && /opt/prescient/bin/pip install --no-cache-dir --no-index --find-links /wheelhouse ".[gpu]"

FROM ${BASE_IMAGE} AS runtime
ARG UID=10001
RUN groupadd --system prescient \
 && useradd --system --uid "${UID}" --gid prescient --home-dir /home/prescient --create-home prescient \
 && mkdir -p /var/cache/numba /data \
 && chown prescient:prescient /var/cache/numba /data
COPY --from=build /opt/prescient /opt/prescient
ENV PATH=/opt/prescient/bin:$PATH \
    NUMBA_CACHE_DIR=/var/cache/numba \
    PYTHONUNBUFFERED=1
USER prescient
WORKDIR /data
# Each container runs one process; the health check asks the bus for that node's health topic.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["prescient", "health", "--timeout-s", "4"]
ENTRYPOINT ["prescient"]
CMD ["--help"]
