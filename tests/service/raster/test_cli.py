"""``prescient raster`` smoke tests: demo scene, an imported AV2 log (real map), missing inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prescient.service.app.cli import main
from prescient.service.raster import CHANNELS

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
AV2_LOG = DATA / "av2_sensor_tracks" / "3b3570b4-7b0b-3268-a571-b0889dbf40b6"


def test_cli_demo_writes_png_and_npy(tmp_path: Path) -> None:
    """--demo renders a PNG with a legend and the raw raster."""
    out, npy = tmp_path / "scene.png", tmp_path / "scene.npy"
    assert main(["raster", "--demo", "--seed", "3", "--out", str(out), "--npy", str(npy)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    raster = np.load(npy)
    assert raster.shape == (len(CHANNELS), 256, 256) and raster.any()


def test_cli_missing_log_fails_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing log exits 1 with a clear message."""
    assert main(["raster", "--log", str(tmp_path / "nope.mcap"), "--out", str(tmp_path / "x.png")]) == 1
    assert "log not found" in capsys.readouterr().err


@pytest.mark.data
def test_cli_renders_imported_av2_log(tmp_path: Path) -> None:
    """An imported Argoverse 2 sensor log renders with its real map and tracks."""
    if not AV2_LOG.is_dir():
        pytest.skip(f"AV2 data not found at {AV2_LOG}")
    from prescient.bus.importers.av2_sensor import import_av2_sensor

    log = tmp_path / "av2.mcap"
    import_av2_sensor(AV2_LOG, log)
    npy = tmp_path / "av2.npy"
    assert (
        main(["raster", "--log", str(log), "--t", "5", "--out", str(tmp_path / "av2.png"), "--npy", str(npy)])
        == 0
    )
    raster = np.load(npy)
    names = [c.name for c in CHANNELS]
    assert raster[names.index("drivable_area")].mean() > 0.05  # the real map is there
    assert raster[names.index("lane_centerline")].any()
    assert raster[names.index("occ_vehicle_t0")].sum() > 50  # real tracked vehicles
    assert raster[names.index("ego_box")].sum() > 10
