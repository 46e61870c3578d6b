#!/usr/bin/env bash
# Fill .ci/docker/wheelhouse/ (ignored by its own .gitignore) with every wheel an image needs, so
# `docker build` installs offline (`pip install --no-index --find-links /wheelhouse`). Built with the
# host's pip, so the wheels match the host's Python, which must be 3.11 like the images' (cp311).
#
# Usage: .ci/docker/make_wheelhouse.sh [cpu] [gpu]    (default: cpu)
#   cpu  Dockerfile      the `cpu` extra (onnxruntime)
#   gpu  Dockerfile.gpu  the `gpu` extra with the onnxruntime-gpu pin of Dockerfile.gpu (ARG ORT_GPU_VERSION)
# PIP=... picks the pip (default .venv/bin/pip, made by `make setup`).
# Re-running is cheap: pip reuses wheels already in the directory and its own cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP="${PIP:-.venv/bin/pip}"
WH=.ci/docker/wheelhouse
flavours=("$@")
((${#flavours[@]})) || flavours=(cpu)

[ -x "$PIP" ] || { echo "no pip at $PIP: run \`make setup\` first (or PIP=/path/to/pip)" >&2; exit 1; }
py="$("$PIP" --version | sed -n 's/.*(python \([0-9.]*\))$/\1/p')"
[ "$py" = 3.11 ] || { echo "$PIP runs Python ${py:-?}; the images need cp311 wheels: use a Python 3.11 pip" >&2; exit 1; }

mkdir -p "$WH"
printf '*\n' > "$WH/.gitignore"  # never committed; rebuilt from pyproject.toml
LOG="$WH/pip-wheel.log"
: > "$LOG"
for flavour in "${flavours[@]}"; do
  case "$flavour" in
    cpu) reqs=(".[cpu]"); max_glibc=2.36 ;;  # Debian bookworm (python:3.11-slim-bookworm, make_base.sh)
    gpu)
      ort="$(sed -n 's/^ARG ORT_GPU_VERSION=//p' Dockerfile.gpu)"
      [ -n "$ort" ] || { echo "no ARG ORT_GPU_VERSION in Dockerfile.gpu" >&2; exit 1; }
      reqs=(".[gpu]" "onnxruntime-gpu==$ort"); max_glibc=2.35 ;;  # Ubuntu 22.04 (the CUDA base)
    *) echo "unknown flavour $flavour (cpu or gpu)" >&2; exit 2 ;;
  esac
  # The runtime set plus the build backend: the image builds the project from source with build
  # isolation, and the build has no index.
  "$PIP" wheel --quiet --wheel-dir "$WH" "${reqs[@]}" "setuptools>=68" wheel >>"$LOG" 2>&1 \
    || { tail -20 "$LOG" >&2; echo "pip wheel $flavour failed (log: $LOG)" >&2; exit 1; }
  # A wheel built for a newer glibc than the image's would not install there.
  "$(dirname "$PIP")/python" - "$WH" "$max_glibc" <<'EOF'
import re, sys
from pathlib import Path
wh, limit = Path(sys.argv[1]), tuple(map(int, sys.argv[2].split(".")))
bad = []
for whl in wh.glob("*.whl"):
    tags = [tuple(map(int, m)) for m in re.findall(r"manylinux_(\d+)_(\d+)", whl.name)]
    if tags and min(tags) > limit:
        bad.append(whl.name)
if bad:
    sys.exit(f"wheels need a newer glibc than {sys.argv[2]}: {bad}")
EOF
  echo "wheelhouse $WH: $flavour (${reqs[*]}) ok"
done
# The project's own wheel is built inside the image from the copied source; a stale copy here
# would shadow it.
rm -f "$WH"/prescient-*.whl
echo "wheelhouse $WH: $(find "$WH" -name '*.whl' | wc -l) wheels, $(du -sh "$WH" | cut -f1)"
