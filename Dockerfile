# prescient onboard image, CPU: runtime dependencies only (no torch), onnxruntime (the `cpu` extra),
# on python:3.11-slim (Debian bookworm). The GPU image is Dockerfile.gpu: the same stages on a CUDA
# base with the pinned onnxruntime-gpu (the `gpu` extra).
#
# Offline by design: Python packages come from .ci/docker/wheelhouse/, filled on the host by
# `.ci/docker/make_wheelhouse.sh cpu` with the host's pip (cp311 wheels), so the image's Python must
# be 3.11. A base that already has python3.11 with venv needs no network at all: python:3.11-slim,
# or the local Debian bookworm image of .ci/docker/make_base.sh that `make docker-smoke` uses:
#   docker build --build-arg BASE_IMAGE=prescient-base:bookworm -t prescient:latest .
#
# numba: every cache=True kernel (tracker, raster, simulator) is compiled at build time, by the
# runtime user, into NUMBA_CACHE_DIR at the path and from the installed files the containers use,
# so a container starts in ~1-2 s instead of compiling for 20-70 s. numba only reads a cache folder
# it can also write (otherwise it silently compiles again into $HOME/.cache, or fails without a
# writable HOME), so the folder belongs to the runtime user: run the image as that user (the
# default), not with another --user. The compiled code is for the build host's CPU model; on a
# different CPU the kernels compile once more, into the same folder (first start slow again).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
ARG PYTHON=python3.11
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN "${PYTHON}" -c 'import ensurepip, venv' && "${PYTHON}" --version

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
# The project is built from this source (setuptools and wheel come from the wheelhouse too). Then
# what the containers never run leaves the venv: pip and setuptools, and the test suites of numpy,
# scipy and numba (~90 MB of ~600 MB; llvmlite, scipy, onnxruntime and numpy are the rest).
RUN "${PYTHON}" -m venv /opt/prescient \
 && /opt/prescient/bin/pip install --no-cache-dir ".[cpu]" \
 && /opt/prescient/bin/python -m pip uninstall --yes --quiet pip setuptools \
 && find /opt/prescient/lib -depth -type d -name tests \
      \( -path '*/site-packages/numpy/*' -o -path '*/site-packages/scipy/*' -o -path '*/site-packages/numba/*' \) \
      -exec rm -rf {} + \
 && /opt/prescient/bin/python -c 'import onnxruntime, prescient.service.app.stack_cli; print("onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())'

FROM base AS runtime
ARG UID=10001
RUN groupadd --system --gid "${UID}" prescient \
 && useradd --system --no-log-init --uid "${UID}" --gid "${UID}" --home-dir /home/prescient --create-home prescient \
 && mkdir -p /var/cache/numba /data \
 && chown prescient:prescient /var/cache/numba /data
COPY --from=build /opt/prescient /opt/prescient
ENV PATH=/opt/prescient/bin:$PATH \
    NUMBA_CACHE_DIR=/var/cache/numba \
    PYTHONUNBUFFERED=1
# Numeric, so a runtime can verify it is not root (runAsNonRoot).
USER ${UID}:${UID}
# Bake the numba cache (see the top): compile everything, then prove in a fresh process that
# nothing needs compiling any more (exit 1 otherwise).
RUN python -m prescient.service.app.warmup \
 && python -m prescient.service.app.warmup --expect-cached
WORKDIR /data
# One process per container; the check is picked from that process (service/app/healthcheck.py):
# bus -> the proxy forwards subscriptions, sim -> ego.state flows, serve -> health.predictor,
# planner -> planner.status, record -> the log file grows. With the baked numba cache a process is
# live ~2 s after start; start-period leaves room for a loaded host (and for a different CPU model
# than the build host's, which compiles once more: then a container may show unhealthy for a while).
HEALTHCHECK --interval=10s --timeout=8s --start-period=30s --retries=3 \
  CMD ["prescient-healthcheck"]
ENTRYPOINT ["prescient"]
CMD ["--help"]
