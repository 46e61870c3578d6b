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


SHIPPED_DIR = PACKAGE_ROOT / "models" / "shipped"
ENV_MODEL = "PRESCIENT_MODEL"


def default_model_path() -> Path:
    """The model a command uses without ``--model``: ``$PRESCIENT_MODEL`` when set (a path, or
    ``int8`` / ``fp32`` for a shipped one), else the shipped int8 model (manifest beside it).

    The int8 file quantises only the convolutions and scores as the float one (model card,
    "Inference variants"); on the CPU it is the faster. On a GPU the float file,
    ``shipped_model_path("fp32")``, is the one to use (``Dockerfile.gpu`` sets
    ``PRESCIENT_MODEL=fp32``): QDQ int8 graphs are not what the CUDA provider is fast at.
    """
    env = os.environ.get(ENV_MODEL, "").strip()
    if env in ("int8", "fp32"):
        return shipped_model_path(env)
    return Path(env).expanduser() if env else shipped_model_path("int8")


def shipped_model_path(precision: str = "int8") -> Path:
    """The shipped model of ``precision`` (``int8`` or ``fp32``)."""
    names = {"int8": "prescient_int8.onnx", "fp32": "prescient.onnx"}
    if precision not in names:
        raise ValueError(f"precision {precision!r}: shipped are {sorted(names)}")
    return SHIPPED_DIR / names[precision]


def user_data_dir() -> Path:
    """``$PRESCIENT_HOME``, else the platform's per-user data folder for prescient (not created).

    Benchmarks write into ``bench/`` below it when given no ``--out``.
    """
    home = os.environ.get("PRESCIENT_HOME")
    if home:
        return Path(home).expanduser()
    from platformdirs import user_data_path

    return user_data_path("prescient", appauthor=False)
