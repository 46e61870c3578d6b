#!/usr/bin/env bash
# Fill .ci/docker/wheelhouse/ (ignored by its own .gitignore) with every wheel the image needs, so `docker build` installs
# offline (`pip install --no-index --find-links /wheelhouse`). Built with the host's pip, so the
# wheels match the host's Python (cp311 here, like Debian bookworm's python3.11 in the base image).
#
# Usage: .ci/docker/make_wheelhouse.sh [PIP]   (default .venv/bin/pip)
# Re-running is cheap: pip reuses wheels already in the directory and its own cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP="${1:-.venv/bin/pip}"
WH=.ci/docker/wheelhouse
mkdir -p "$WH"
printf '*\n' > "$WH/.gitignore"  # never committed; rebuilt from pyproject.toml
# The runtime set (gpu extra: onnxruntime-gpu) plus the build backend, because the image builds the
# project from source with build isolation and the build has no index.
LOG="$WH/pip-wheel.log"
"$PIP" wheel --quiet --wheel-dir "$WH" ".[gpu]" "setuptools>=68" wheel >"$LOG" 2>&1 \
  || { tail -20 "$LOG" >&2; echo "pip wheel failed (log: $LOG)" >&2; exit 1; }
# The project's own wheel is built inside the image from the copied source; a stale copy here
# would shadow it.
rm -f "$WH"/prescient-*.whl
echo "wheelhouse $WH: $(ls "$WH"/*.whl | wc -l) wheels, $(du -sh "$WH" | cut -f1)"
