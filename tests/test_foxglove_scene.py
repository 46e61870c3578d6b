"""Scene conversion and the ``foxglove.*`` MCAP export (service/app/foxglove)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path

import numpy as np
import pytest

foxglove = pytest.importorskip("foxglove")

from foxglove import messages as fm  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402
from mcap.reader import make_reader  # noqa: E402

from prescient.bus import messages as m  # noqa: E402
from prescient.bus.logfile import LogExistsError  # noqa: E402
from prescient.service.app.foxglove import scene  # noqa: E402
from prescient.service.app.foxglove.export import export_scene  # noqa: E402
from prescient.service.app.foxglove.stream import SceneStream  # noqa: E402
from tests.bus._log_helpers import write_sample_log  # noqa: E402
from tests.bus.samples import sample_message  # noqa: E402

YEAR_2020_NS = int(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC).timestamp()) * 10**9


def decode_protobuf(schema_name: str, schema_data: bytes, data: bytes):
    """Decode a protobuf MCAP message with the FileDescriptorSet carried in its schema."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(schema_data)
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))
    return cls.FromString(data)


def pb(msg):
    """A ``foxglove.messages`` object (write-only in the SDK) as a readable protobuf message."""
    schema = type(msg).get_schema()
    return decode_protobuf(schema.name, schema.data, msg.encode())


def test_csr_segments_make_line_list_pairs() -> None:
    """Two polylines of 3 and 2 points -> 2 + 1 segments; a closed triangle -> 3."""
    xy = np.array([[0, 0], [1, 0], [2, 0], [5, 5], [6, 5]], np.float32)
    segs = scene.csr_segments(xy, np.array([0, 3, 5]))
    assert segs.shape == (3, 2, 2) and segs[1].tolist() == [[1, 0], [2, 0]]
    tri = scene.csr_segments(xy[:3] + [[0, 0], [0, 1], [0, 0]], np.array([0, 3]), closed=True)
    assert tri.shape == (3, 2, 2) and tri[-1, 1].tolist() == [0, 0]


def test_predictions_draw_k_paths_with_alpha_by_probability_and_horizon_ellipse() -> None:
    """Per agent and mode: a strip of T points (alpha grows with p) and an ellipse of Laplace radii."""
    pred = sample_message(m.Predictions, seed=3, n=2)
    ent = pb(scene.predictions_entity(pred, 10**18))
    n, k, t = pred.trajectories_m.shape[:3]
    assert len(ent.lines) == 2 * n * k and ent.frame_id == scene.MAP_FRAME
    path, band = ent.lines[0], ent.lines[1]
    assert len(path.points) == t and len(band.points) == scene.ELLIPSE_POINTS
    c = pred.trajectories_m[0, 0, -1]
    r = pred.scale_m[0, 0, -1]
    assert band.points[0].x == pytest.approx(c[0] + r[0], abs=1e-4)
    assert band.points[0].y == pytest.approx(c[1], abs=1e-4)
    assert scene.path_alpha(0.0) == scene.MIN_PATH_ALPHA and scene.path_alpha(1.0) == 1.0


def test_scene_update_has_map_tracks_ego_and_encodes() -> None:
    """Boxes per track coloured by class, map lines, ego box + plan; round trip through protobuf."""
    tracks = sample_message(m.Tracks, seed=1, n=4)
    ego = sample_message(m.EgoState, seed=2, n=4)
    vmap = dataclasses.replace(
        sample_message(m.VectorMap, seed=4, n=1),
        left_boundary_xy_m=np.array([[0, 2], [10, 2], [20, 2]], np.float32),
        left_boundary_offsets=np.array([0, 3]),
        crossing_xy_m=np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32),
        crossing_offsets=np.array([0, 4]),
    )
    up = pb(scene.scene_update(1_700_000_000 * 10**9, vmap=vmap, tracks=tracks, ego=ego))
    ids = [e.id for e in up.entities]
    assert ids == ["map", "tracks", "ego"]
    cubes = up.entities[1].cubes
    assert len(cubes) == 4
    rgb = scene.class_rgb(int(tracks.class_id[0]))
    assert (cubes[0].color.r, cubes[0].color.g, cubes[0].color.b) == pytest.approx(rgb)
    assert up.entities[2].lines and up.entities[2].lines[0].points  # the plan
    assert up.entities[0].timestamp.seconds == 1_700_000_000
    crossing = [ln for ln in up.entities[0].lines if len(ln.points) == 8]  # 4 closed edges, 2 points each
    assert len(crossing) == 1 and crossing[0].type == int(fm.LinePrimitiveLineType.LineList)
    tf = pb(scene.ego_transform(ego, 0))
    assert (tf.parent_frame_id, tf.child_frame_id) == ("map", "base_link")


def test_stream_maps_planner_and_health_to_json_with_ms_and_hz() -> None:
    """``planner.status`` -> /planner/status (ms); ``health.*`` -> /health (JSON, no inf)."""
    st = SceneStream(stamp_offset_ns=5, log_offset_ns=7)
    ps = dataclasses.replace(
        sample_message(m.PlannerStatus, seed=1), e2e_latency_ns=12_500_000, min_ttc_s=float("inf")
    )
    (out,) = st.convert(m.TOPIC_PLANNER_STATUS, ps, 100)
    assert out.topic == "/planner/status" and out.log_time_ns == 107
    assert out.payload["e2e_latency_ms"] == 12.5 and out.payload["min_ttc_s"] is None
    json.dumps(out.payload, allow_nan=False)
    h = dataclasses.replace(sample_message(m.Health, seed=1), live={"tick_rate_mhz": 10_000})
    (out,) = st.convert(h.header.topic, h, 0)
    assert out.topic == "/health" and out.payload["tick_rate_hz"] == 10.0


@pytest.fixture
def sample_log(tmp_path: Path) -> Path:
    path = tmp_path / "run.mcap"
    write_sample_log(path, n_rounds=3)
    return path


def test_export_writes_foxglove_schemas_with_wall_clock_log_times(sample_log: Path, tmp_path: Path) -> None:
    """The export reads back with ``mcap``: foxglove.SceneUpdate / FrameTransform, decodable, > 2020."""
    out = tmp_path / "scene.mcap"
    counts = export_scene(sample_log, out)
    assert counts["/scene"] == 3 * 4 and counts["/tf"] == 3 and counts["/health"] == 3
    seen: dict[str, str] = {}
    with open(out, "rb") as f:
        for schema, channel, rec in make_reader(f).iter_messages():
            seen[channel.topic] = schema.name
            assert rec.log_time > YEAR_2020_NS
            if schema.encoding == "protobuf":
                decode_protobuf(schema.name, schema.data, rec.data)
            else:
                assert isinstance(json.loads(rec.data), dict)
    assert seen["/scene"] == "foxglove.SceneUpdate" and seen["/tf"] == "foxglove.FrameTransform"
    assert seen["/raster"] == "foxglove.RawImage" and counts["/raster"] >= 1
    assert set(seen) == {"/scene", "/tf", "/planner/status", "/health", "/raster"}
    assert [p for p in os.listdir(tmp_path) if p.endswith(".part")] == []


def test_export_refuses_existing_output_and_leaves_no_partial_file(
    sample_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Existing output refused unless overwrite; an export interrupted midway leaves nothing behind."""
    out = tmp_path / "scene.mcap"
    export_scene(sample_log, out)
    before = out.read_bytes()
    with pytest.raises(LogExistsError):
        export_scene(sample_log, out)

    def boom() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_scene(sample_log, out, overwrite=True, on_message=boom)
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["run.mcap", "scene.mcap"]


def test_view_needs_a_log_or_live(capsys: pytest.CaptureFixture[str]) -> None:
    """`prescient view` with neither a LOG nor --live (or both): one line, exit 1."""
    from prescient.service.app.cli import main

    assert main(["view"]) == 1
    assert main(["view", "x.mcap", "--live"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("give a LOG to play or --live" in ln for ln in err)


def test_raster_image_is_the_rasterizers_picture_at_most_every_period() -> None:
    """/raster: the service rasterizer's frame for the tracks, coloured as `prescient raster`
    draws it (rgb8, ego at the centre), at most one per period of sensor time."""
    from prescient.service.app.foxglove.raster_image import RasterImages
    from prescient.service.raster.config import RasterConfig
    from prescient.service.raster.rasterizer import Rasterizer
    from prescient.service.raster.rgb import to_rgb

    vmap = sample_message(m.VectorMap, seed=2)
    ego = sample_message(m.EgoState, seed=2)
    tracks = sample_message(m.Tracks, seed=2)
    images = RasterImages(period_ns=500_000_000)
    assert images.image(tracks, 0) is None  # no ego state yet
    for msg in (vmap, ego):
        images.note(msg)
    raw = images.image(tracks, 123)
    assert raw is not None
    schema = type(raw).get_schema()
    img = decode_protobuf(schema.name, schema.data, raw.encode())  # as the Foxglove app reads it
    assert schema.name == "foxglove.RawImage" and (img.encoding, img.frame_id) == ("rgb8", "base_link")
    assert (img.timestamp.seconds, img.timestamp.nanos) == (0, 123)
    cfg = RasterConfig()
    assert (img.height, img.width, img.step) == (cfg.height_px, cfg.width_px, 3 * cfg.width_px)
    r = Rasterizer(cfg, vmap, warm_up=False)
    plan = np.asarray(ego.plan_xy_m, np.float64) if len(ego.plan_xy_m) else None
    want = to_rgb(r.render(tracks, np.asarray(ego.pose, np.float64), plan_xy_m=plan), r.channels)
    got = np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 3)
    np.testing.assert_array_equal(got, want)
    later = dataclasses.replace(
        tracks, header=dataclasses.replace(tracks.header, stamp_ns=tracks.header.stamp_ns + 10**8)
    )
    assert images.image(later, 0) is None  # 0.1 s later: within the period
    later = dataclasses.replace(
        tracks, header=dataclasses.replace(tracks.header, stamp_ns=tracks.header.stamp_ns + 5 * 10**8)
    )
    assert images.image(later, 0) is not None
