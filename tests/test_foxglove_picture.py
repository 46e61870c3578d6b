"""``prescient export-scene --picture``: drawn from the exported SceneUpdate messages themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("foxglove")
pytest.importorskip("matplotlib")

from prescient.service.app.foxglove.export import export_scene  # noqa: E402
from prescient.service.app.foxglove.picture import entities_at, render_layout  # noqa: E402
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
    png = render_layout(scene, 1e6, tmp_path / "scene.png")
    assert png.stat().st_size > 5_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no /scene message"):
        render_layout(log, 0.0, tmp_path / "x.png")  # the prescient log itself has no /scene topic


def test_view_record_keeps_what_is_streamed_and_the_layout_picture_draws_it(tmp_path: Path) -> None:
    """`view LOG --record F`: F holds the streamed topics (the server's own context writes it);
    `foxglove-picture F` draws the layout's panels from it: scene, raster image, latency, rate."""

    from mcap.reader import make_reader

    from prescient.service.app.cli import main
    from prescient.service.app.foxglove.picture import panels_at

    log = tmp_path / "run.mcap"
    write_sample_log(log, n_rounds=3)
    rec = tmp_path / "live.mcap"
    assert main(["view", str(log), "--port", "0", "--rate", "0", "--record", str(rec)]) == 0
    with rec.open("rb") as f:
        counts = {}
        for _, channel, _ in make_reader(f).iter_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
    exported = export_scene(log, tmp_path / "scene.mcap")
    assert counts == exported  # the recording is the stream, message for message
    panels = panels_at(rec, 1e6)
    assert panels["raster"] is not None and panels["raster"].shape[2] == 3
    assert len(panels["latency"]) == exported["/planner/status"]
    png = tmp_path / "layout.png"
    assert main(["foxglove-picture", str(rec), "--at", "100", "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["foxglove-picture", str(log), "--out", str(tmp_path / "x.png")]) == 1  # no /scene: one line


def test_up_foxglove_records_the_stream_in_the_run_directory_only_when_recording(tmp_path: Path) -> None:
    import dataclasses

    from prescient.service.app import stack

    opts = stack.StackOptions(out_dir=tmp_path, foxglove_port=0, model=None)
    view = {c.name: c.argv for c in stack.build_children(opts, tmp_path / "log.mcap")}["foxglove"]
    assert view[view.index("--record") + 1] == str(tmp_path / "foxglove.mcap")
    quiet = dataclasses.replace(opts, record=False)
    assert (
        "--record"
        not in {c.name: c.argv for c in stack.build_children(quiet, tmp_path / "log.mcap")}["foxglove"]
    )
