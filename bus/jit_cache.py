"""Where numba keeps the compiled ``cache=True`` kernels of the simulator, tracker and raster.

numba keys a cached kernel on the path and modification time of the file that defines it, and
nothing else: a kernel that calls a jitted function of *another* file (the simulator's behaviour
kernels call the lane and RNG kernels, the tracker's call the measurement kernels) keeps running
its old machine code after that other file changes, and globals a kernel reads from another module
(column layouts, message constants) are frozen into it the same way. So the cache lives in a folder
named after a digest of every module that imports numba and of the modules those import from, plus
numba's and Python's versions: change any of them and every kernel compiles afresh into a new
folder; the old folder is simply no longer read.

The base folder is ``$NUMBA_CACHE_DIR`` when set (the Makefile uses ``.numba_cache``, the image
a folder baked at build), else the user's cache folder. :func:`configure` must run before any
kernel module is imported: ``prescient.service`` and ``prescient.sim_sensors`` call it first thing.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]  # holds bus/, service/, sim_sensors/ (checkout or wheel)
_KERNEL_PACKAGES = ("service", "sim_sensors")
_IMPORT = re.compile(r"^from prescient\.([\w.]+) import", re.M)
_configured: Path | None = None


def kernel_sources_digest(root: Path = _ROOT) -> str:
    """sha256 (16 hex) of the kernel modules and of the modules they import from.

    Kernel modules: those under ``service/`` and ``sim_sensors/`` that import numba. numba also
    freezes the globals a kernel reads (the column layouts, ``bus.messages`` constants) into its
    machine code, so the modules a kernel module imports from (``from prescient.X import ...``)
    count too. Prose that only names numba does not.
    """
    from importlib.metadata import version

    files: set[Path] = set()
    for pkg in _KERNEL_PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            text = path.read_text()
            if "import numba" in text or "from numba" in text:
                files.add(path)
                files.update(_imported_files(root, text))
    h = hashlib.sha256(f"numba {version('numba')} python {sys.version_info[:2]}".encode())
    for path in sorted(files):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _imported_files(root: Path, text: str) -> set[Path]:
    """Files of the ``prescient.*`` modules ``text`` imports from (those that exist here)."""
    out = set()
    for module in _IMPORT.findall(text):
        base = root.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                out.add(candidate)
    return out


def configure() -> Path:
    """Point numba's cache at ``<base>/kernels-<digest>`` (once per process); returns that folder.

    Without importing numba when it is not loaded yet (the container health check imports this
    package and needs no numba): then the folder goes into ``$NUMBA_CACHE_DIR``, which numba
    reads when it is imported, and which child processes inherit (they find the same folder).
    """
    global _configured
    if _configured is not None:
        return _configured
    base = os.environ.get("NUMBA_CACHE_DIR")
    if base:
        base_dir = Path(base)
        if base_dir.name.startswith("kernels-"):  # set by a parent process
            base_dir = base_dir.parent
    else:
        from platformdirs import user_cache_path

        base_dir = user_cache_path("prescient", appauthor=False) / "numba"
    folder = base_dir / f"kernels-{kernel_sources_digest()}"
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.config.CACHE_DIR = str(folder)
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    _configured = folder
    return folder
