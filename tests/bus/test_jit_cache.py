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


def test_a_module_that_only_names_numba_does_not_move_the_cache(tmp_path: Path) -> None:
    for pkg in ("service", "sim_sensors"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = jit_cache.kernel_sources_digest(tmp_path)
    node = tmp_path / "service" / "node.py"  # mentions numba in prose, defines no kernel
    assert b"numba" in node.read_bytes()
    node.write_text(node.read_text() + "\n# an edit\n")
    assert jit_cache.kernel_sources_digest(tmp_path) == before


def test_a_layout_module_kernels_import_from_moves_the_cache(tmp_path: Path) -> None:
    """numba freezes imported globals (column indices) into the machine code: their module counts."""
    for pkg in ("service", "sim_sensors"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = jit_cache.kernel_sources_digest(tmp_path)
    layout = tmp_path / "sim_sensors" / "layout.py"
    assert b"import numba" not in layout.read_bytes() and b"from numba" not in layout.read_bytes()
    layout.write_text(layout.read_text() + "\n# an edit\n")
    assert jit_cache.kernel_sources_digest(tmp_path) != before
