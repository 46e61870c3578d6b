"""Importers: real shared data (skipped if absent) and small bad files that must fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.bus.importers import InputError
from prescient.bus.importers.av2_map import load_av2_map
from prescient.bus.importers.av2_motion import import_av2_motion
from prescient.bus.importers.av2_sensor import import_av2_sensor
from prescient.bus.importers.eth_ucy import import_eth_ucy, load_eth_ucy_scene
from prescient.bus.logreader import ReadStats, iter_log
from prescient.bus.replayer import iter_messages

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


def _by_topic(path: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    stats = ReadStats()
    for lm in iter_messages(path, stats=stats):
        out.setdefault(lm.topic, []).append(lm.msg)
    assert stats.total_skipped == 0 and not stats.problems
    return out


# ---------------------------------------------------------------------------------------------- ETH/UCY
def test_eth_ucy_import_real_scene_tracks_match_file(tmp_path: Path) -> None:
    """biwi_eth.txt -> one Tracks per annotated frame, positions equal to the file, causal velocity."""
    src = _need(DATA / "eth_ucy" / "eth" / "test" / "biwi_eth.txt")
    scene = load_eth_ucy_scene(src)
    assert len(scene.frame_id) == 5492 and len(np.unique(scene.ped_id)) == 360  # README numbers
    out = tmp_path / "eth.mcap"
    counts = import_eth_ucy(src, out)
    assert counts[m.TOPIC_TRACKS] == len(np.unique(scene.frame_id)) == 876
    tracks = _by_topic(out)[m.TOPIC_TRACKS]
    assert sum(len(t.track_id) for t in tracks) == 5492
    t = tracks[100]
    frame = t.header.stamp_ns // 40_000_000
    rows = scene.frame_id == frame
    order = np.argsort(scene.ped_id[rows])
    np.testing.assert_allclose(t.position_m, scene.xy_m[rows][order], atol=1e-5)
    assert (t.class_id == m.AgentClass.PEDESTRIAN).all()
    trajs = scene.trajectories()
    pid = int(t.track_id[0])
    frames, xy = trajs[pid]
    k = int(np.flatnonzero(frames == frame)[0])
    if k > 0:  # backward difference over 0.4 s
        np.testing.assert_allclose(t.velocity_mps[0], (xy[k] - xy[k - 1]) / 0.4, atol=1e-4)
        assert t.history_valid[0, -1] and t.history_valid[0, -5]  # 0.4 s back is known
    np.testing.assert_allclose(t.history_xy_m[:, -1], t.position_m, atol=1e-5)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("780\t1.0\t8.46\n", "line 1: expected 4 columns"),
        ("780\t1.0\t8.46\tnan\n", "line 1: NaN or inf"),
        ("780\t1.0\t8.46\t3.5\n770\t2.0\t1.0\t1.0\n", "line 2: non-monotonic time: frame 770 after 780"),
        ("780\t1.0\t8.46\t3.5\n780\t1.0\t8.0\t3.0\n", "duplicate row for ped 1 at frame 780"),
        ("780\t1.0\t8.46\t3.5\n785\t1.0\t8.0\t3.0\n", "frame step 5 is not a multiple of 10"),
        ("780\t1.5\t8.46\t3.5\n", "ped_id 1.5 is not an integer"),
        ("780\tabc\t8.46\t3.5\n", "line 1: not a number"),
        ("", "no data rows"),
    ],
)
def test_eth_ucy_bad_files_raise_input_error(tmp_path: Path, text: str, match: str) -> None:
    """Each defect names the file, the line and the problem."""
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(InputError, match=match) as e:
        load_eth_ucy_scene(p)
    assert str(p) in str(e.value)


# ---------------------------------------------------------------------------------------------- AV2 map
def test_av2_map_real_files_convert_and_keep_topology() -> None:
    """Both map flavours (with and without centerlines) convert; ids, topology and polygons survive."""
    paths = sorted(_need(DATA).glob("av2_*/*/log_map_archive_*.json")) + sorted(
        DATA.glob("av2_*/*/map/log_map_archive_*.json")
    )
    if not paths:
        pytest.skip("no AV2 maps in shared data")
    from prescient.bus import codec

    for p in paths:
        doc = json.loads(p.read_text())
        vm = load_av2_map(p)
        codec.decode(m.TOPIC_MAP, codec.encode(vm))  # valid on the wire
        assert len(vm.lane_id) == len(doc["lane_segments"])
        assert len(vm.crossing_offsets) - 1 == len(doc["pedestrian_crossings"])
        assert len(vm.drivable_offsets) - 1 == len(doc["drivable_areas"])
        lane = doc["lane_segments"][str(int(vm.lane_id[0]))]
        s, e = vm.successor_offsets[0], vm.successor_offsets[1]
        assert list(vm.successor_ids[s:e]) == lane["successors"]
        a, b = vm.left_boundary_offsets[0], vm.left_boundary_offsets[1]
        np.testing.assert_allclose(
            vm.left_boundary_xy_m[a:b], [[q["x"], q["y"]] for q in lane["left_lane_boundary"]], rtol=1e-6
        )
        assert (np.diff(vm.centerline_offsets) >= 2).all()
        assert vm.stop_line_xy_m.shape == (0, 2, 2) and len(vm.light_lane_id) == 0


def _tiny_map() -> dict:
    pt = lambda x, y: {"x": x, "y": y, "z": 0.0}  # noqa: E731
    return {
        "lane_segments": {
            "1": {
                "id": 1,
                "lane_type": "VEHICLE",
                "is_intersection": False,
                "left_lane_boundary": [pt(0, 1), pt(10, 1)],
                "right_lane_boundary": [pt(0, -1), pt(10, -1)],
                "predecessors": [],
                "successors": [2],
                "left_neighbor_id": None,
                "right_neighbor_id": None,
            }
        },
        "pedestrian_crossings": {
            "7": {"id": 7, "edge1": [pt(0, 0), pt(0, 4)], "edge2": [pt(2, 0), pt(2, 4)]}
        },
        "drivable_areas": {"9": {"id": 9, "area_boundary": [pt(0, 0), pt(10, 0), pt(10, 10)]}},
    }


def test_av2_map_tiny_centerline_is_boundary_midpoint(tmp_path: Path) -> None:
    """Without a centerline in the file, it is the resampled midpoint of the boundaries."""
    p = tmp_path / "log_map_archive_x.json"
    p.write_text(json.dumps(_tiny_map()))
    vm = load_av2_map(p)
    np.testing.assert_allclose(vm.centerline_xy_m[:, 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(vm.centerline_xy_m[[0, -1], 0], [0.0, 10.0], atol=1e-6)
    np.testing.assert_allclose(vm.crossing_xy_m, [[0, 0], [0, 4], [2, 4], [2, 0]])
    assert vm.map_id == "x" and list(vm.successor_ids) == [2] and vm.lane_left_neighbor_id[0] == -1


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d["lane_segments"]["1"].update(lane_type="HOVERCRAFT"), "lane 1: unknown lane_type"),
        (lambda d: d["lane_segments"]["1"].pop("successors"), r"lane 1: missing keys \['successors'\]"),
        (lambda d: d["lane_segments"]["1"]["left_lane_boundary"][0].update(x=float("nan")), "NaN or inf"),
        (lambda d: d.pop("drivable_areas"), "missing or malformed 'drivable_areas'"),
        (lambda d: d["pedestrian_crossings"]["7"].pop("edge2"), "pedestrian crossing 7: missing edge1/edge2"),
    ],
)
def test_av2_map_bad_files_raise_input_error(tmp_path: Path, mutate, match: str) -> None:
    """Map defects name the file, the element and the problem."""
    d = _tiny_map()
    mutate(d)
    p = tmp_path / "log_map_archive_x.json"
    p.write_text(json.dumps(d))
    with pytest.raises(InputError, match=match):
        load_av2_map(p)


# ---------------------------------------------------------------------------------------------- AV2 sensor
def test_av2_sensor_import_real_log_world_frame(tmp_path: Path) -> None:
    """adcf7d18: map + 10 Hz ego/tracks; objects in the city frame near the ego; classes mapped."""
    src = _need(DATA / "av2_sensor_tracks" / "adcf7d18-0510-35b0-a2fa-b4cea13a6d76")
    import pandas as pd

    out = tmp_path / "s.mcap"
    counts = import_av2_sensor(src, out)
    topics = _by_topic(out)
    assert counts[m.TOPIC_MAP] == 1 and counts[m.TOPIC_EGO] == counts[m.TOPIC_TRACKS] == 156
    ann = pd.read_feather(src / "annotations.feather")
    poses = pd.read_feather(src / "city_SE3_egovehicle.feather")
    t0 = int(ann["timestamp_ns"].min())
    pose0 = poses[poses["timestamp_ns"] == t0].iloc[0]
    ego = topics[m.TOPIC_EGO][0]
    np.testing.assert_allclose(ego.pose[:2], [pose0["tx_m"], pose0["ty_m"]])
    tr = topics[m.TOPIC_TRACKS][0]
    dist = np.hypot(*(tr.position_m - ego.pose[:2]).T)
    rows0 = ann[ann["timestamp_ns"] == t0]
    # Each kept object's distance to the ego equals its distance in the ego frame (rigid transform).
    moving_classes = rows0[
        ~rows0["category"].isin(
            ["BOLLARD", "CONSTRUCTION_CONE", "SIGN", "EGO_VEHICLE", "CONSTRUCTION_BARREL", "STOP_SIGN"]
        )
    ]
    ego_frame_dist = np.sort(np.hypot(moving_classes["tx_m"], moving_classes["ty_m"]))
    np.testing.assert_allclose(np.sort(dist), ego_frame_dist, atol=0.05)  # z of the ego tilt is small
    assert len(tr.track_id) == len(moving_classes)
    assert set(np.unique(tr.class_id)) <= {int(c) for c in m.AgentClass} - {m.AgentClass.UNKNOWN}
    assert (tr.ego_pose == ego.pose).all()


def test_av2_sensor_all_shared_logs_import(tmp_path: Path) -> None:
    """Every shared AV2 sensor log imports and decodes cleanly."""
    logs = sorted(p for p in _need(DATA / "av2_sensor_tracks").iterdir() if p.is_dir())
    for src in logs:
        out = tmp_path / f"{src.name}.mcap"
        counts = import_av2_sensor(src, out)
        assert counts[m.TOPIC_TRACKS] >= 150
        assert sum(1 for _ in iter_log(out)) == sum(counts.values())


def _tiny_sensor_log(d: Path) -> None:
    (d / "map").mkdir(parents=True)
    (d / "map" / "log_map_archive_tiny.json").write_text(json.dumps(_tiny_map()))
    (d / "city_SE3_egovehicle.csv").write_text(
        "timestamp_ns,qw,qx,qy,qz,tx_m,ty_m,tz_m\n"
        + "".join(f"{t},1,0,0,0,{t / 1e9:.3f},0,0\n" for t in range(0, 300_000_000, 50_000_000))
    )
    (d / "annotations.csv").write_text(
        "timestamp_ns,track_uuid,category,length_m,width_m,height_m,qw,qx,qy,qz,tx_m,ty_m,tz_m\n"
        + "".join(
            f"{t},u1,REGULAR_VEHICLE,4,2,1.5,1,0,0,0,{5 + t / 1e8:.3f},1,0\n"
            for t in (0, 100_000_000, 200_000_000)
        )
    )


def test_av2_sensor_tiny_log_transform_and_velocity(tmp_path: Path) -> None:
    """Ego at +1 m/s along x, object ahead at +10 m/s in the ego frame: world 7.2 m, 11 m/s."""
    _tiny_sensor_log(tmp_path / "log")
    counts = import_av2_sensor(tmp_path / "log", tmp_path / "o.mcap")
    topics = _by_topic(tmp_path / "o.mcap")
    assert counts[m.TOPIC_TRACKS] == 3
    last = topics[m.TOPIC_TRACKS][-1]
    np.testing.assert_allclose(last.position_m[0], [0.2 + 5 + 2, 1.0], atol=1e-5)
    np.testing.assert_allclose(last.velocity_mps[0], [11.0, 0.0], atol=1e-3)  # 1 (ego) + 10 (relative)
    np.testing.assert_allclose(topics[m.TOPIC_EGO][-1].velocity_mps, [1.0, 0.0], atol=1e-6)
    assert last.class_id[0] == m.AgentClass.CAR


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (("annotations.csv", "category", "REGULAR_VEHICLE", "SPACESHIP"), "unknown category 'SPACESHIP'"),
        (("annotations.csv", "tx_m", "5.000", "nan"), "column 'tx_m', row 0: NaN or inf"),
        (("annotations.csv", "drop", "track_uuid", None), r"missing column\(s\) \['track_uuid'\]"),
        (("city_SE3_egovehicle.csv", "swap", None, None), "non-monotonic time"),
        (("city_SE3_egovehicle.csv", "shift", None, None), "no ego pose at timestamp"),
    ],
)
def test_av2_sensor_bad_inputs_raise_input_error(tmp_path: Path, edit, match: str) -> None:
    """Missing column, NaN, unknown class, unordered poses, missing pose: each named clearly."""
    d = tmp_path / "log"
    _tiny_sensor_log(d)
    name, kind, a, b = edit
    p = d / name
    lines = p.read_text().splitlines()
    if kind == "drop":
        hdr = lines[0].split(",")
        i = hdr.index(a)
        lines = [",".join(v for j, v in enumerate(line.split(",")) if j != i) for line in lines]
    elif kind == "swap":
        lines[2], lines[3] = lines[3], lines[2]
    elif kind == "shift":
        lines = [lines[0]] + [line.replace("000000,", "000001,", 1) for line in lines[1:]]
    else:
        lines = [lines[0]] + [line.replace(a, b, 1) for line in lines[1:]]
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=match) as e:
        import_av2_sensor(d, tmp_path / "o.mcap")
    assert name in str(e.value)


# ---------------------------------------------------------------------------------------------- AV2 motion
def test_av2_motion_real_scenario_parquet_and_csv_agree(tmp_path: Path) -> None:
    """The scenario imports from parquet and from CSV to bit-identical logs; focal track kept."""
    src = _need(DATA / "av2_motion_forecasting" / "0a1e6f0a-1817-4a98-b02e-db8c9327d151")
    pytest.importorskip("pyarrow")
    a, b = tmp_path / "a.mcap", tmp_path / "b.mcap"
    counts = import_av2_motion(src, a)
    import_av2_motion(next(src.glob("scenario_*.csv")), b)
    assert counts[m.TOPIC_TRACKS] == counts[m.TOPIC_EGO] == 110 and counts[m.TOPIC_MAP] == 1
    assert [r.payload for r in iter_log(a)] == [r.payload for r in iter_log(b)]
    stats = ReadStats()
    tracks = [lm.msg for lm in iter_messages(a, topics=[m.TOPIC_TRACKS], stats=stats)]
    assert stats.metadata["prescient.av2_motion"]["focal_track_id"] == "138951"
    assert all(138951 in t.track_id for t in tracks)  # the focal agent has all 110 steps
    assert sum(len(t.track_id) for t in tracks) + 110 == _csv_rows(next(src.glob("scenario_*.csv")))


def _csv_rows(p: Path) -> int:
    return sum(1 for _ in p.open()) - 1


def _tiny_motion(d: Path, rows: list[str]) -> None:
    d.mkdir()
    (d / "log_map_archive_t.json").write_text(json.dumps(_tiny_map()))
    hdr = "observed,track_id,object_type,object_category,timestep,position_x,position_y,heading,velocity_x,velocity_y,start_timestamp"
    (d / "scenario_t.csv").write_text(hdr + "\n" + "\n".join(rows) + "\n")


_GOOD = [f"True,AV,vehicle,1,{k},{k},0,0,10,0,1000" for k in range(3)] + [
    f"True,5,pedestrian,2,{k},3,{k * 0.1},1.57,0,1,1000" for k in range(3)
]


def test_av2_motion_tiny_scenario(tmp_path: Path) -> None:
    """A hand-written scenario: ego from 'AV', pedestrian with given velocity, 100 ms steps."""
    _tiny_motion(tmp_path / "s", _GOOD)
    import_av2_motion(tmp_path / "s", tmp_path / "o.mcap")
    topics = _by_topic(tmp_path / "o.mcap")
    assert [e.header.stamp_ns for e in topics[m.TOPIC_EGO]] == [1000, 100_001_000, 200_001_000]
    t = topics[m.TOPIC_TRACKS][-1]
    assert list(t.track_id) == [5] and t.class_id[0] == m.AgentClass.PEDESTRIAN
    np.testing.assert_allclose(t.velocity_mps[0], [0, 1])
    np.testing.assert_allclose(topics[m.TOPIC_EGO][-1].pose, [2, 0, 0])


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (_GOOD[:4] + [_GOOD[5], _GOOD[4]], "non-monotonic time: track 5 timestep 1 after 2"),
        (_GOOD[:5] + [_GOOD[5].replace(",1,1000", ",nan,1000")], "column 'velocity_y', row 5: NaN or inf"),
        (_GOOD[3:], "no ego track 'AV'"),
        ([r.replace("pedestrian", "unicorn") for r in _GOOD], "unknown object_type 'unicorn'"),
    ],
)
def test_av2_motion_bad_inputs_raise_input_error(tmp_path: Path, rows: list[str], match: str) -> None:
    """Non-monotonic time, NaN, missing ego, unknown type: each named with file, column, row."""
    _tiny_motion(tmp_path / "s", rows)
    with pytest.raises(InputError, match=match) as e:
        import_av2_motion(tmp_path / "s", tmp_path / "o.mcap")
    assert "scenario_t.csv" in str(e.value)


def test_av2_motion_missing_column(tmp_path: Path) -> None:
    """A table without 'heading' fails naming the column."""
    rows = [",".join(v for j, v in enumerate(r.split(",")) if j != 7) for r in _GOOD]
    d = tmp_path / "s"
    d.mkdir()
    (d / "log_map_archive_t.json").write_text(json.dumps(_tiny_map()))
    hdr = "observed,track_id,object_type,object_category,timestep,position_x,position_y,velocity_x,velocity_y,start_timestamp"
    (d / "scenario_t.csv").write_text(hdr + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"missing column\(s\) \['heading'\]"):
        import_av2_motion(d, tmp_path / "o.mcap")
