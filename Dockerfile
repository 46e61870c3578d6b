# prescient onboard image: runtime dependencies only (no torch), onnxruntime-gpu (the `gpu` extra).
#
# Offline by design: Python packages come from .ci/docker/wheelhouse/, built on the host by
# .ci/docker/make_wheelhouse.sh with the host's pip (cp311 wheels), so the image's Python must be 3.11.
# BASE_IMAGE defaults to NVIDIA's CUDA 12 + cuDNN 9 runtime (what onnxruntime-gpu's CUDA provider
# loads); it has no Python, so the `base` stage adds python3.11 from apt. A base that already has
# python3.11 with venv (the local Debian bookworm image of .ci/docker/make_base.sh, used by
# `make docker-smoke`) needs no network at all:
#   docker build --build-arg BASE_IMAGE=prescient-base:bookworm -t prescient:latest .
# Without a GPU (or without the NVIDIA container toolkit) onnxruntime-gpu runs on CPU; the service
# reports the provider really in use on health.predictor and in its log.
ARG BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

FROM ${BASE_IMAGE} AS base
ARG PYTHON=python3.11
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Versions follow the base image's distribution release; pinning them here would break on every
# point release of the base, hence DL3008 off for this line.
# hadolint ignore=DL3008
RUN if ! "${PYTHON}" -c 'import ensurepip, venv' 2>/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends "${PYTHON}" "${PYTHON}-venv" \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && "${PYTHON}" --version

FROM base AS build
ARG PYTHON=python3.11
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INDEX=1 \
    PIP_FIND_LINKS=/wheelhouse
WORKDIR /src
COPY .ci/docker/wheelhouse/ /wheelhouse/
COPY pyproject.toml README.md ./
COPY bus/ bus/
COPY sim_sensors/ sim_sensors/
COPY service/ service/
COPY models/ models/
COPY benchmarks/ benchmarks/
# The project is built from this source (setuptools and wheel come from the wheelhouse too).
RUN "${PYTHON}" -m venv /opt/prescient \
 && /opt/prescient/bin/pip install --no-cache-dir ".[gpu]" \
 && /opt/prescient/bin/python -c 'import onnxruntime, prescient.service.app.stack_cli; print("onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())'

FROM base AS runtime
ARG UID=10001
RUN groupadd --system --gid "${UID}" prescient \
 && useradd --system --no-log-init --uid "${UID}" --gid "${UID}" --home-dir /home/prescient --create-home prescient \
 && mkdir -p /var/cache/numba /data \
 && chown prescient:prescient /var/cache/numba /data
COPY --from=build /opt/prescient /opt/prescient
# NUMBA_CACHE_DIR: numba's cache=True kernels compile once per container, into a directory the
# non-root user can write (site-packages is read-only for it).
ENV PATH=/opt/prescient/bin:$PATH \
    NUMBA_CACHE_DIR=/var/cache/numba \
    PYTHONUNBUFFERED=1
# Numeric, so a runtime can verify it is not root (runAsNonRoot).
USER ${UID}:${UID}
WORKDIR /data
# One process per container; the check is picked from that process (service/app/healthcheck.py):
# bus -> the proxy forwards subscriptions, sim -> ego.state flows, serve -> health.predictor,
# planner -> planner.status, record -> the log file grows. start-period covers numba compiling
# the kernels on first start (72 s on a loaded 2-core host without a warm cache).
HEALTHCHECK --interval=10s --timeout=8s --start-period=120s --retries=3 \
  CMD ["prescient-healthcheck"]
ENTRYPOINT ["prescient"]
CMD ["--help"]
