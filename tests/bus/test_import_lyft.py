"""Lyft Level 5 (l5kit zarr) importer: the real shared scene (skipped if absent) and damaged copies."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.bus.importers import InputError
from prescient.bus.importers.lyft import (
    LABEL_CLASS,
    LABELS,
    MAX_FRAMES,
    NO_MAP_ID,
    import_lyft,
    load_l5kit_scene,
)
from prescient.bus.logreader import ReadStats
from prescient.bus.replayer import iter_messages

SCENE_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "l5kit_single_scene"
ZARR = SCENE_DIR / "single_scene.zarr"
SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "shipped" / "prescient.onnx"

pytestmark = pytest.mark.data


def _zarr() -> Any:
    if not ZARR.is_dir():
        pytest.skip(f"shared data not found at {ZARR}")
    return pytest.importorskip("zarr")


def _by_topic(path: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    stats = ReadStats()
    for lm in iter_messages(path, stats=stats):
        out.setdefault(lm.topic, []).append(lm.msg)
    assert stats.total_skipped == 0 and not stats.problems
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], dict[str, list]]:
    """The shared scene imported once: (log path, counts, messages by topic)."""
    _zarr()
    out = tmp_path_factory.mktemp("lyft") / "lyft.mcap"
    counts = import_lyft(ZARR, out)
    return out, counts, _by_topic(out)


def _writable_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "scene.zarr"
    shutil.copytree(ZARR, dst)
    for root, dirs, files in os.walk(dst):
        for name in dirs + files:
            os.chmod(Path(root) / name, 0o755 if name in dirs else 0o644)
    os.chmod(dst, 0o755)
    return dst


# ---------------------------------------------------------------------------------------------- real scene
def test_lyft_import_real_scene_frames_stamps_and_ego(imported) -> None:
    """248 frames at ~10 Hz capture stamps, an empty map, ego path ~268 m (data README)."""
    zarr = _zarr()
    _, counts, topics = imported
    assert counts == {m.TOPIC_EGO: 248, m.TOPIC_TRACKS: 248, m.TOPIC_GROUND_TRUTH: 248, m.TOPIC_MAP: 1}
    (vmap,) = topics[m.TOPIC_MAP]
    assert vmap.map_id == NO_MAP_ID and len(vmap.lane_id) == 0
    frames = zarr.open_group(str(ZARR), mode="r")["frames"][:]
    stamps = np.array([e.header.stamp_ns for e in topics[m.TOPIC_EGO]])
    np.testing.assert_array_equal(stamps, frames["timestamp"])
    dt = np.diff(stamps)
    assert (dt > 0).all() and np.abs(dt / 1e9 - 0.1).max() < 0.005
    xy = np.array([e.pose[:2] for e in topics[m.TOPIC_EGO]])
    assert np.hypot(*np.diff(xy, axis=0).T).sum() == pytest.approx(268.0, abs=2.0)
    speed = np.hypot(*np.array([e.velocity_mps for e in topics[m.TOPIC_EGO]]).T)
    assert speed[0] == 0.0 and 5.0 < speed.max() < 20.0  # urban drive, m/s


def test_lyft_import_agent_counts_equal_zarr_intervals(imported) -> None:
    """Tracks per frame = agent_index_interval length; GroundTruth rows match the Tracks."""
    zarr = _zarr()
    _, _, topics = imported
    iv = zarr.open_group(str(ZARR), mode="r")["frames"][:]["agent_index_interval"]
    n = np.array([len(t.track_id) for t in topics[m.TOPIC_TRACKS]])
    np.testing.assert_array_equal(n, iv[:, 1] - iv[:, 0])
    assert n.sum() == 20802
    for tr, gt in zip(topics[m.TOPIC_TRACKS], topics[m.TOPIC_GROUND_TRUTH]):
        np.testing.assert_array_equal(tr.track_id, gt.agent_id)
        np.testing.assert_allclose(tr.class_probs.sum(axis=1), 1.0, atol=1e-5)


def test_lyft_import_known_agent_matches_csv_row(imported) -> None:
    """Track 1 (a car seen in all 248 frames) at frame 120: position, box, yaw, velocity as in agents.csv."""
    _, _, topics = imported
    with open(SCENE_DIR / "agents.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["frame_index"] == "120" and r["track_id"] == "1")
    tracks = topics[m.TOPIC_TRACKS][120]
    assert tracks.header.stamp_ns == int(row["timestamp_ns"])
    (k,) = np.flatnonzero(tracks.track_id == 1)
    want_xy = [float(row["centroid_x"]), float(row["centroid_y"])]
    # float32 on the wire: ~1e-4 m at |x| ~ 1000 m
    np.testing.assert_allclose(tracks.position_m[k], want_xy, atol=1e-3)
    want_lwh = [float(row[c]) for c in ("extent_length", "extent_width", "extent_height")]
    np.testing.assert_allclose(tracks.size_lwh_m[k], want_lwh, atol=1e-5)
    assert tracks.yaw_rad[k] == pytest.approx(float(row["yaw"]), abs=1e-5)
    np.testing.assert_allclose(
        tracks.velocity_mps[k], [float(row["velocity_x"]), float(row["velocity_y"])], atol=1e-5
    )
    assert row["label"] == "PERCEPTION_LABEL_CAR" and tracks.class_id[k] == m.AgentClass.CAR
    assert tracks.history_valid[k].all()  # seen since frame 0


def test_lyft_import_classes_follow_the_label_table(imported) -> None:
    """Every row's class is its csv label's class; soft rows keep their aggregated probabilities."""
    zarr = _zarr()
    _, _, topics = imported
    with open(SCENE_DIR / "agents.csv", newline="") as f:
        want = {
            (int(r["frame_index"]), int(r["track_id"])): LABEL_CLASS[r["label"]] for r in csv.DictReader(f)
        }
    got = {
        (i, int(tid)): int(c)
        for i, t in enumerate(topics[m.TOPIC_TRACKS])
        for tid, c in zip(t.track_id, t.class_id)
    }
    assert len(got) == len(want) == 20802
    assert {k: int(v) for k, v in want.items()} == got
    counts = np.bincount(list(got.values()), minlength=m.NUM_CLASSES)
    assert counts[m.AgentClass.UNKNOWN] == 14666 and counts[m.AgentClass.CAR] == 5749
    assert counts[m.AgentClass.PEDESTRIAN] == 309 and counts[m.AgentClass.CYCLIST] == 78
    # A row whose probabilities are not one-hot: aggregated over our classes, label by label.
    g = zarr.open_group(str(ZARR), mode="r")
    agents, iv = g["agents"][:], g["frames"][:]["agent_index_interval"]
    r = int(np.flatnonzero(agents["label_probabilities"].max(axis=1) < 0.9)[0])
    frame = int(np.searchsorted(iv[:, 1], r, side="right"))
    expect = np.zeros(m.NUM_CLASSES)
    for name, p in zip(LABELS, agents["label_probabilities"][r]):
        expect[LABEL_CLASS[name]] += p
    tracks = topics[m.TOPIC_TRACKS][frame]
    (k,) = np.flatnonzero(tracks.track_id == int(agents["track_id"][r]))
    np.testing.assert_allclose(tracks.class_probs[k], expect / expect.sum(), atol=1e-6)
    assert tracks.class_probs[k].max() < 0.9


def test_lyft_imported_log_replays_with_predictions(imported, tmp_path: Path) -> None:
    """`prescient replay` (prescient.service.offline.replay_log) predicts on the first 2 s of the imported log."""
    from prescient.service.offline import replay_log

    log_path, _, topics = imported
    model = SHIPPED_MODEL if SHIPPED_MODEL.is_file() else None
    pred_path = tmp_path / "preds.mcap"
    summary = replay_log(log_path, model, out=pred_path, end_s=2.0)
    assert summary["exit_code"] == 0 and summary["mode"] == "tracks from log"
    assert summary["ticks"] >= 19
    preds = _by_topic(pred_path)[m.TOPIC_PREDICTIONS]
    assert len(preds) == summary["ticks"]
    last = preds[-1]
    n_in = len(topics[m.TOPIC_TRACKS][len(preds) - 1].track_id)
    assert 0 < len(last.trajectories_m) <= n_in
    assert np.isfinite(last.trajectories_m).all()
    np.testing.assert_allclose(last.mode_probs.sum(axis=1), 1.0, atol=1e-4)


# ---------------------------------------------------------------------------------------------- damage
def _edit_zarray(path: Path, **changes: Any) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _set_field(copy: Path, array: str, row: int, field: str, value: Any) -> None:
    import zarr

    a = zarr.open_array(str(copy / array), mode="r+")
    rec = a[row : row + 1]
    rec[field][0] = value
    a[row : row + 1] = rec


DAMAGE = [
    ("agents chunk deleted", lambda c: (c / "agents" / "1").unlink(), "agents: chunk 1 .* is missing"),
    (
        "agents chunk truncated",
        lambda c: (c / "agents" / "0").write_bytes((c / "agents" / "0").read_bytes()[:5000]),
        "agents: cannot decode rows",
    ),
    ("frames array deleted", lambda c: shutil.rmtree(c / "frames"), "missing or unreadable array 'frames'"),
    ("group metadata garbage", lambda c: (c / ".zgroup").write_text("{not json"), "not a readable zarr"),
    (
        "field missing",
        lambda c: _edit_zarray(
            c / "frames" / ".zarray",
            dtype=[
                f for f in json.loads((c / "frames" / ".zarray").read_text())["dtype"] if f[0] != "timestamp"
            ],
        ),
        "column 'timestamp'",
    ),
    ("absurd chunk size", lambda c: _edit_zarray(c / "agents" / ".zarray", chunks=[10**12]), "chunk of"),
    (
        "NaN centroid",
        lambda c: _set_field(c, "agents", 7, "centroid", [np.nan, 0.0]),
        "row 7: agents: NaN or inf",
    ),
    ("inf ego", lambda c: _set_field(c, "frames", 3, "ego_translation", [np.inf, 0, 0]), "NaN or inf"),
    (
        "absurd frame count",
        lambda c: _set_field(c, "scenes", 0, "frame_index_interval", [0, 10**12]),
        f"more than {MAX_FRAMES}",
    ),
    (
        "agent interval outside",
        lambda c: _set_field(c, "frames", 247, "agent_index_interval", [20668, 10**9]),
        "outside 0:20802",
    ),
    ("time goes back", lambda c: _set_field(c, "frames", 10, "timestamp", 1), "timestamps must .*increase"),
    (
        "bad probabilities",
        lambda c: _set_field(c, "agents", 2, "label_probabilities", np.zeros(17)),
        "sum to 0",
    ),
    ("duplicate track", lambda c: _set_field(c, "agents", 1, "track_id", 1), "track 1 twice in frame 0"),
]


@pytest.mark.parametrize(("name", "damage", "match"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_lyft_damaged_zarr_raises_input_error(tmp_path: Path, name: str, damage, match: str) -> None:
    """Each kind of damage is one InputError naming the zarr, and no output file is left."""
    _zarr()
    copy = _writable_copy(tmp_path)
    damage(copy)
    out = tmp_path / "out.mcap"
    with pytest.raises(InputError, match=match) as info:
        import_lyft(copy, out)
    assert str(copy) in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()


def test_lyft_cli_damaged_zarr_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`prescient import lyft` on a damaged copy: exit 1, one error line, no traceback."""
    from prescient.service.app.cli import main

    _zarr()
    copy = _writable_copy(tmp_path)
    (copy / "agents" / "0").write_bytes(b"\x00" * 64)
    assert main(["import", "lyft", str(copy), "--out", str(tmp_path / "o.mcap")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "agents" in err and "Traceback" not in err


def test_lyft_cli_without_zarr_names_the_extra_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """zarr not installed: one line naming the `data` extra, exit 2."""
    from prescient.service.app.cli import main

    monkeypatch.setitem(sys.modules, "zarr", None)  # `import zarr` raises ModuleNotFoundError
    assert main(["import", "lyft", str(tmp_path), "--out", str(tmp_path / "o.mcap")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'prescient[data]'" in err


def test_lyft_scene_index_out_of_range_raises() -> None:
    """A scene index the zarr lacks is an InputError, not an IndexError."""
    _zarr()
    with pytest.raises(InputError, match="scene 5 not in the zarr"):
        load_l5kit_scene(ZARR, scene=5)
