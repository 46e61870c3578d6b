"""``prescient export-scene --picture``: drawn from the exported SceneUpdate messages themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("foxglove")
pytest.importorskip("matplotlib")

from prescient.service.app.foxglove.export import export_scene  # noqa: E402
from prescient.service.app.foxglove.picture import entities_at, render_scene  # noqa: E402
from tests.bus._log_helpers import write_sample_log  # noqa: E402


def test_picture_keeps_the_newest_entity_of_each_id_and_refuses_a_plain_log(tmp_path: Path) -> None:
    log = tmp_path / "run.mcap"
    write_sample_log(log, n_rounds=3)
    scene = tmp_path / "scene.mcap"
    export_scene(log, scene)
    early, t_early = entities_at(scene, 0.0)
    late, t_late = entities_at(scene, 1e6)
    assert set(late) == {"map", "tracks", "predictions", "ego"} and t_late > t_early
    assert set(early) <= set(late)
    assert sum(len(e.cubes) for e in late.values()) >= 2  # tracked boxes and the ego box
    png = render_scene(scene, 1e6, tmp_path / "scene.png")
    assert png.stat().st_size > 5_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no /scene message"):
        render_scene(log, 0.0, tmp_path / "x.png")  # the prescient log itself has no /scene topic
