"""Where the installed product keeps its files: the shipped model, and results and caches.

The shipped model is package data (``models/shipped/`` next to this package, in a checkout and in
an installed wheel alike). Results are never written into the package: site-packages may be
read-only (a container) and is not the user's. They go to ``--out`` when given, else to
``$PRESCIENT_HOME`` or the user's data directory (``platformdirs``).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding bus/, service/, models/


def default_model_path() -> Path:
    """The shipped ONNX model (its manifest lies next to it)."""
    return PACKAGE_ROOT / "models" / "shipped" / "prescient.onnx"


def user_data_dir() -> Path:
    """``$PRESCIENT_HOME``, else the platform's per-user data folder for prescient (not created).

    Benchmarks write into ``bench/`` below it when given no ``--out``.
    """
    home = os.environ.get("PRESCIENT_HOME")
    if home:
        return Path(home).expanduser()
    from platformdirs import user_data_path

    return user_data_path("prescient", appauthor=False)
