#!/usr/bin/env bash
# Build the local base image (Debian bookworm + python3.11 + venv) with debootstrap and
# `docker import`, for hosts without an image registry. Idempotent: does nothing when the
# image already exists (delete it with `docker rmi prescient-base:bookworm` to rebuild).
#
# Usage: .ci/docker/make_base.sh [IMAGE_TAG]      (default prescient-base:bookworm)
# Needs: root, debootstrap, a reachable Debian mirror ($DEBIAN_MIRROR), a running dockerd.
set -euo pipefail

TAG="${1:-prescient-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG already present"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap not installed (apt-get install debootstrap)" >&2; exit 1; }

ROOTFS="$(mktemp -d /tmp/prescient-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap bookworm into $ROOTFS (a few minutes)"
# minbase + what the image needs: python3.11 with venv/ensurepip, useradd (passwd), CA certs.
debootstrap --variant=minbase --include=python3,python3-venv,passwd,ca-certificates \
  bookworm "$ROOTFS" "$MIRROR" >/tmp/prescient-debootstrap.log 2>&1 \
  || { tail -20 /tmp/prescient-debootstrap.log >&2; exit 1; }
# Smaller image: no apt lists, docs or caches.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/usr/share/doc/* \
  "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
# `docker import` keeps no environment: set PATH (the Dockerfile appends to it) and a UTF-8 locale.
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  - "$TAG" >/dev/null
docker run --rm "$TAG" python3 -c 'import sys, venv; print("base image ok: python", sys.version.split()[0])'
echo "built $TAG"
