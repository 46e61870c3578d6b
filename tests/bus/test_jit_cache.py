"""The numba kernel cache follows every kernel module's source, not only each kernel's own file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numba

from prescient.bus import jit_cache

REPO = Path(__file__).resolve().parents[2]


def test_cache_dir_is_keyed_by_the_kernel_sources() -> None:
    import prescient.service.tracker  # noqa: F401  (configures the cache on import)

    assert Path(numba.config.CACHE_DIR).name == f"kernels-{jit_cache.kernel_sources_digest()}"


def test_editing_a_called_kernel_file_changes_the_digest(tmp_path: Path) -> None:
    """An edit in a file whose kernels are called from other files moves the whole cache."""
    for pkg in ("service", "sim_sensors"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = jit_cache.kernel_sources_digest(tmp_path)
    lanes = tmp_path / "sim_sensors" / "lanes.py"  # called by the behaviour kernels of step.py
    lanes.write_text(lanes.read_text() + "\n# an edit\n")
    assert jit_cache.kernel_sources_digest(tmp_path) != before
    readme = tmp_path / "service" / "raster" / "CHANNELS.md"  # not a kernel module
    readme.write_text("changed")
    after = jit_cache.kernel_sources_digest(tmp_path)
    readme.write_text("changed again")
    assert jit_cache.kernel_sources_digest(tmp_path) == after
