"""Manifest helpers shared by the exporter and the onboard predictor (no torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path

MANIFEST_FORMAT_VERSION = 1


def manifest_path_for(onnx_path: str | Path) -> Path:
    """``foo.onnx`` -> ``foo.manifest.json`` (same folder)."""
    p = Path(onnx_path)
    return p.with_name(p.stem + ".manifest.json")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
