"""OnnxPredictor with a tiny model built on the fly: load checks, world-frame outputs, fallback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from prescient.bus.messages import NUM_CLASSES, TOPIC_TRACKS, TRACK_HISTORY_STEPS, Tracks, empty
from prescient.models.export_tiny import TINY_SPEC_VERSION, build_tiny_model, write_tiny_onnx
from prescient.service.model_io.config import INPUT_NAMES
from prescient.service.model_io.features import agent_inputs_from_tracks
from prescient.service.predictor import (
    ModelLoadError,
    OnnxPredictor,
    PredictionInputError,
    constant_velocity_predictions,
)
from prescient.service.tracks import TrackSnapshot

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_onnx(tmp_path_factory.mktemp("tiny"))


def make_tracks(n: int, rng: np.random.Generator, ego_pose=(100.0, -50.0, 0.7)) -> TrackSnapshot:
    """n tracks near the ego moving straight, with full history (world frame)."""
    ego = np.asarray(ego_pose, np.float64)
    pos = (ego[:2] + rng.uniform(-20, 20, (n, 2))).astype(np.float32)
    yaw = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    speed = rng.uniform(0, 10, n)
    vel = np.stack([np.cos(yaw) * speed, np.sin(yaw) * speed], 1).astype(np.float32)
    t = (np.arange(TRACK_HISTORY_STEPS) - (TRACK_HISTORY_STEPS - 1)) * 0.1
    hist = pos[:, None, :] + vel[:, None, :] * t[None, :, None]
    probs = np.zeros((n, NUM_CLASSES), np.float32)
    probs[:, 1] = 1
    msg: Tracks = empty(
        Tracks,
        TOPIC_TRACKS,
        ego_pose=ego,
        track_id=np.arange(n, dtype=np.int64),
        class_id=np.ones(n, np.int32),
        class_probs=probs,
        status=np.ones(n, np.uint8),
        position_m=pos,
        velocity_mps=vel,
        accel_mps2=np.zeros((n, 2), np.float32),
        yaw_rad=yaw,
        yaw_rate_radps=np.zeros(n, np.float32),
        size_lwh_m=np.tile(np.float32([4.5, 1.9, 1.5]), (n, 1)),
        covariance=np.zeros((n, 4, 4), np.float32),
        attributes=np.zeros(n, np.uint8),
        age_s=np.ones(n, np.float32),
        history_xy_m=hist.astype(np.float32),
        history_yaw_rad=np.repeat(yaw[:, None], TRACK_HISTORY_STEPS, 1),
        history_valid=np.ones((n, TRACK_HISTORY_STEPS), bool),
    )
    return TrackSnapshot.from_message(msg)


def _raster(pred: OnnxPredictor, rng) -> np.ndarray:
    return rng.random((pred.cfg.in_channels, *pred.cfg.raster_hw), dtype=np.float32)


def test_predictor_loads_and_reports_actual_provider(tiny):
    """The session loads on CPU here and reports the provider it really uses."""
    pred = OnnxPredictor(*tiny, intra_op_threads=1, expected_spec_version=TINY_SPEC_VERSION)
    assert pred.provider == pred.session.get_providers()[0] == "CPUExecutionProvider"
    assert pred.cfg.num_modes == 3 and pred.model_id


def test_predictor_outputs_match_torch_in_world_frame(tiny, rng):
    """predict() equals the PyTorch net's agent-frame output rotated/translated to the world."""
    pred = OnnxPredictor(*tiny, intra_op_threads=1)
    tracks = make_tracks(5, rng)
    raster = _raster(pred, rng)
    out = pred.predict(raster, tracks, np.float32([3.0, 1.0]), np.float32([4.8, 2.0, 1.6]))
    cfg = pred.cfg
    assert out.trajectories_m.shape == (5, cfg.num_modes, cfg.future_steps, 2)
    assert out.from_model.all()
    np.testing.assert_allclose(out.mode_probs.sum(1), 1.0, atol=1e-5)

    inputs = agent_inputs_from_tracks(cfg, tracks, np.float32([3.0, 1.0]), np.float32([4.8, 2.0, 1.6]))
    feed = {k: torch.from_numpy(v) for k, v in inputs.as_feed().items()}
    feed["raster"] = torch.from_numpy(raster[None])
    with torch.no_grad():
        traj, probs, _ = build_tiny_model()(*(feed[n] for n in INPUT_NAMES))
    for slot in range(5):
        i = inputs.agent_index[slot]
        x, y, yaw = inputs.agent_pose_world[slot]
        rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        world = traj[0, slot].numpy() @ rot.T + [x, y]
        np.testing.assert_allclose(out.trajectories_m[i], world, atol=1e-3)
        np.testing.assert_allclose(out.mode_probs[i], probs[0, slot].numpy(), atol=1e-5)


def test_predictor_more_tracks_than_n_max_fills_constant_velocity(tiny, rng):
    """Tracks beyond N_MAX (the farthest) get the constant-velocity fallback, flagged."""
    pred = OnnxPredictor(*tiny, intra_op_threads=1)
    tracks = make_tracks(pred.cfg.n_max + 3, rng)
    out = pred.predict(_raster(pred, rng), tracks, np.zeros(2, np.float32), np.float32([4.5, 2, 1.5]))
    assert out.from_model.sum() == pred.cfg.n_max
    far = np.argsort(np.linalg.norm(tracks.position_m - tracks.ego_pose[:2], axis=1))[-3:]
    assert not out.from_model[far].any()
    cv, _, _ = constant_velocity_predictions(
        tracks.position_m[far].astype(np.float64),
        tracks.velocity_mps[far].astype(np.float64),
        num_modes=3,
        future_steps=12,
        dt_s=0.1,
    )
    np.testing.assert_allclose(out.trajectories_m[far], cv, atol=1e-4)


@pytest.mark.parametrize("n_tracks", [0, 1, 5, 19])
def test_predictor_dynamic_agent_axis_feeds_only_valid_agents(tiny, tmp_path, rng, n_tracks):
    """A model with a symbolic agent axis gets only the agents of each pass (at least one
    slot) and predicts what the fixed-axis export of the same weights predicts, also over
    several passes and with no tracks."""
    fixed = OnnxPredictor(*tiny, intra_op_threads=1)
    dyn = OnnxPredictor(
        *write_tiny_onnx(tmp_path, dynamic_agents=True), intra_op_threads=1, agents_per_pass=fixed.cfg.n_max
    )
    assert dyn.agents_symbolic and not fixed.agents_symbolic
    fed: list[int] = []
    run = dyn._run
    dyn._run = lambda feed: fed.append(feed["agent_valid"].shape[1]) or run(feed)  # type: ignore[method-assign]
    tracks = make_tracks(n_tracks, rng)
    raster = _raster(fixed, rng)
    args = (np.float32([2.0, 0.5]), np.float32([4.5, 2, 1.5]))
    a = fixed.predict(raster, tracks, *args, passes=3)
    b = dyn.predict(raster, tracks, *args, passes=3)
    n_max = fixed.cfg.n_max
    assert fed == (
        [max(n_tracks, 1)] if n_tracks <= n_max else [n_max] * (n_tracks // n_max) + [n_tracks % n_max]
    )
    assert (a.from_model == b.from_model).all()
    np.testing.assert_allclose(a.trajectories_m, b.trajectories_m, atol=1e-4)
    np.testing.assert_allclose(a.mode_probs, b.mode_probs, atol=1e-5)
    np.testing.assert_allclose(a.scale_m, b.scale_m, atol=1e-4)


def test_predictor_wrong_raster_shape_raises(tiny, rng):
    """A raster of the wrong shape is a PredictionInputError naming the raster."""
    pred = OnnxPredictor(*tiny, intra_op_threads=1)
    with pytest.raises(PredictionInputError, match="raster: expected shape"):
        pred.predict(np.zeros((3, 32, 32), np.float32), make_tracks(2, rng), np.zeros(2), np.ones(3))


def test_predictor_nan_raster_raises(tiny, rng):
    """predict_inputs (the entry for inputs built elsewhere) rejects a NaN raster before inference."""
    pred = OnnxPredictor(*tiny, intra_op_threads=1)
    raster = _raster(pred, rng)
    raster[1, 3, 4] = np.nan
    inputs = agent_inputs_from_tracks(pred.cfg, make_tracks(2, rng), np.zeros(2), np.ones(3))
    with pytest.raises(PredictionInputError, match="non-finite"):
        pred.predict_inputs(raster, inputs)


def test_predictor_sha_mismatch_refused(tiny, tmp_path):
    """A model file that does not match the manifest's sha256 is refused at load."""
    onnx_path, manifest = tiny
    man = json.loads(manifest.read_text())
    man["sha256"] = "0" * 64
    bad = tmp_path / "bad.manifest.json"
    bad.write_text(json.dumps(man))
    with pytest.raises(ModelLoadError, match="sha256"):
        OnnxPredictor(onnx_path, bad)


def test_predictor_raster_spec_mismatch_refused(tiny):
    """A model trained on another raster spec version is refused."""
    with pytest.raises(ModelLoadError, match="raster spec"):
        OnnxPredictor(*tiny, expected_spec_version="some-other-spec")


def test_predictor_channel_count_mismatch_refused(tiny):
    """A model expecting another channel count is refused."""
    with pytest.raises(ModelLoadError, match="raster channels"):
        OnnxPredictor(*tiny, expected_num_channels=60)


def test_predictor_manifest_shape_mismatch_refused(tiny, tmp_path):
    """A manifest whose input shapes disagree with the graph is refused, naming the input."""
    onnx_path, manifest = tiny
    man = json.loads(manifest.read_text())
    man["inputs"][1]["shape"][1] = 99
    bad = tmp_path / "bad.manifest.json"
    bad.write_text(json.dumps(man))
    with pytest.raises(ModelLoadError, match="agent_hist"):
        OnnxPredictor(onnx_path, bad)


def test_predictor_missing_files_refused(tmp_path, tiny):
    """Missing model or manifest: a clear ModelLoadError naming the path."""
    with pytest.raises(ModelLoadError, match="model file not found"):
        OnnxPredictor(tmp_path / "nope.onnx")
    with pytest.raises(ModelLoadError, match="manifest not found"):
        OnnxPredictor(tiny[0], tmp_path / "nope.json")


def test_constant_velocity_predictions_straight_line():
    """CV: positions advance by v*dt per step; mode 0 has probability 1; scales grow."""
    traj, probs, scale = constant_velocity_predictions(
        np.array([[1.0, 2.0]]), np.array([[2.0, -1.0]]), num_modes=2, future_steps=3, dt_s=0.5
    )
    np.testing.assert_allclose(traj[0, 0], [[2.0, 1.5], [3.0, 1.0], [4.0, 0.5]])
    np.testing.assert_allclose(traj[0, 1], traj[0, 0])
    np.testing.assert_allclose(probs, [[1.0, 0.0]])
    assert np.all(np.diff(scale[0, 0, :, 0]) > 0)


def test_predictor_module_does_not_import_torch():
    """The onboard predictor must not pull in torch."""
    code = "import sys, prescient.service.predictor; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


def test_predictor_symbolic_axis_takes_more_agents_per_pass(tiny, tmp_path, rng):
    """A symbolic agent axis is not bound to the manifest's slots: one pass takes up to
    SYMBOLIC_AGENTS_PER_PASS agents (or ``agents_per_pass``); a fixed axis keeps its n_max."""
    from prescient.service.predictor import SYMBOLIC_AGENTS_PER_PASS, ModelLoadError

    fixed = OnnxPredictor(*tiny, intra_op_threads=1)
    paths = write_tiny_onnx(tmp_path, dynamic_agents=True)
    dyn = OnnxPredictor(*paths, intra_op_threads=1)
    n_max = fixed.cfg.n_max
    assert (fixed.agents_per_pass, dyn.agents_per_pass) == (n_max, SYMBOLIC_AGENTS_PER_PASS)
    fed: list[int] = []
    run = dyn._run
    dyn._run = lambda feed: fed.append(feed["agent_valid"].shape[1]) or run(feed)  # type: ignore[method-assign]
    tracks = make_tracks(n_max + 3, rng)
    args = (np.float32([2.0, 0.5]), np.float32([4.5, 2, 1.5]))
    out = dyn.predict(_raster(fixed, rng), tracks, *args)
    assert out.from_model.all() and fed == [n_max + 3]
    assert OnnxPredictor(*paths, intra_op_threads=1, agents_per_pass=n_max + 1).agents_per_pass == n_max + 1
    with pytest.raises(ModelLoadError):
        OnnxPredictor(*paths, intra_op_threads=1, agents_per_pass=0)
