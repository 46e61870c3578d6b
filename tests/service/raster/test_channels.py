"""Channel table, versioned spec, generated docs and the colour picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prescient.service.raster import (
    CHANNELS,
    DEFAULT_SPEC,
    SPEC_VERSION,
    RasterConfig,
    RasterSpecMismatch,
    build_spec,
    channels_markdown,
)
from prescient.service.raster.channels import build_channels
from prescient.service.raster.rgb import save_png, to_rgb

CHANNELS_MD = Path(__file__).resolve().parents[3] / "service" / "raster" / "CHANNELS.md"


def test_channels_table_is_consistent() -> None:
    """Indices run 0..C-1, names are unique, about 60 channels, every range is ordered."""
    assert [c.index for c in CHANNELS] == list(range(len(CHANNELS)))
    assert len({c.name for c in CHANNELS}) == len(CHANNELS)
    assert 50 <= len(CHANNELS) <= 70
    assert all(lo < hi for lo, hi in (c.value_range for c in CHANNELS))
    assert DEFAULT_SPEC.shape == (len(CHANNELS), 256, 256)


def test_channels_md_is_up_to_date() -> None:
    """CHANNELS.md equals the rendered table (regenerate: python -m prescient.service.raster.channels)."""
    assert CHANNELS_MD.read_text() == channels_markdown()


def test_history_frames_change_the_table() -> None:
    """3 history frames give 5 x 3 occupancy channels."""
    chans = build_channels(RasterConfig(history_frames=3))
    assert sum(c.group == "agents" for c in chans) == 15


def test_spec_mismatch_is_refused() -> None:
    """A different resolution, history or channel set is refused with the field named."""
    spec = build_spec(RasterConfig())
    spec.check_compatible(DEFAULT_SPEC)
    spec.check_compatible(DEFAULT_SPEC.fingerprint())
    assert DEFAULT_SPEC.fingerprint().startswith(f"raster-v{SPEC_VERSION}-{len(CHANNELS)}x256x256-")
    with pytest.raises(RasterSpecMismatch, match="resolution_m"):
        build_spec(RasterConfig(extent_m=32.0, resolution_m=0.25)).check_compatible(spec)
    with pytest.raises(RasterSpecMismatch, match="history_offsets_s"):
        build_spec(RasterConfig(history_frames=3)).check_compatible(spec)
    with pytest.raises(RasterSpecMismatch, match="model expects raster spec"):
        build_spec(RasterConfig(extent_m=32.0)).check_compatible(spec.fingerprint())


def test_config_rejects_bad_values() -> None:
    """Non-positive resolution or a tiny raster fail validation."""
    with pytest.raises(ValueError):
        RasterConfig(resolution_m=0.0)
    with pytest.raises(ValueError, match="too small"):
        RasterConfig(extent_m=0.5, resolution_m=0.5)


def test_to_rgb_and_png(tmp_path: Path) -> None:
    """to_rgb gives (H, W, 3) uint8 with the ego box coloured; save_png writes a PNG."""
    raster = np.zeros(DEFAULT_SPEC.shape, np.float32)
    raster[[c.name for c in CHANNELS].index("ego_box"), 120:130, 126:130] = 1.0
    rgb = to_rgb(raster)
    assert rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8
    assert rgb[125, 127, 1] > 150 and rgb[0, 0, 1] < 50
    with pytest.raises(ValueError, match="expected"):
        to_rgb(raster[:10])
    out = save_png(raster, tmp_path / "scene.png", resolution_m=0.5, title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
