"""Simulation training data, training and export on one tiny generated run (11 s, 3 samples)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from prescient.models.net import TrajectoryNet, wta_laplace_loss
from prescient.models.sim_data import (
    FUTURE_STEPS,
    STORE_N_MAX,
    GenConfig,
    SimDataError,
    generate,
    list_shards,
    load_shard,
    match_tracks_to_truth,
    parse_seeds,
    plan_runs,
    targets_in_agent_frame,
)
from prescient.models.train_sim import (
    SimSamples,
    TrainConfig,
    export_best,
    model_config_for,
    split_runs,
    train,
)
from prescient.service.raster import RasterConfig, build_spec


def generate_small_run(out: Path) -> Path:
    """One short generated run (intersection, seed 3, 15 agents, 11 s, a sample every 0.5 s) in ``out``."""
    runs = plan_runs(["intersection"], [3], duration_s=11.0, n_agents=15, night_fraction=0.0)
    generate(out, runs, GenConfig(stride_ticks=5), workers=1)
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_small_run(tmp_path_factory.mktemp("simdata"))


def _two_runs(data_dir: Path, tmp_path: Path) -> Path:
    """A data folder of two runs (one generated shard under two run names): train/val split."""
    two = tmp_path / "data"
    two.mkdir()
    src = list_shards(data_dir)[0]
    shutil.copy(src, two / "intersection_s0003.npz")
    shutil.copy(src, two / "intersection_s0004.npz")
    return two


def test_parse_seeds_ranges_and_errors():
    assert parse_seeds("0-3,7, 9") == [0, 1, 2, 3, 7, 9]
    with pytest.raises(SimDataError, match="bad seed range"):
        parse_seeds("5-2")
    with pytest.raises(SimDataError, match="unknown scenarios"):
        plan_runs(["moon_base"], [0], 20.0, 10, 0.0)


def test_plan_runs_seed_major_and_night_fraction():
    runs = plan_runs(["intersection", "arterial"], list(range(40)), 20.0, 10, 0.3)
    assert [r.scenario for r in runs[:4]] == ["intersection", "arterial", "intersection", "arterial"]
    nights = sum(r.night for r in runs)
    assert 10 <= nights <= 40  # ~24 expected of 80
    assert plan_runs(["intersection"], [5], 20.0, 10, 0.3) == plan_runs(["intersection"], [5], 20.0, 10, 0.3)


def test_match_is_one_to_one_within_radius():
    tracks = np.array([[0.0, 0.0], [0.5, 0.0], [10.0, 0.0]])
    gt = np.array([[0.4, 0.0], [20.0, 0.0]])
    assert match_tracks_to_truth(tracks, gt, 2.0).tolist() == [-1, 0, -1]


def test_generated_shard_is_well_formed(data_dir: Path):
    """Shapes, spec, finite targets, valid masks and rasters decoding to the onboard layout."""
    index = json.loads((data_dir / "index.json").read_text())
    (path,) = list_shards(data_dir)
    shard = load_shard(path)
    a = shard.arrays
    s = shard.num_samples
    assert s == index["samples"] == 3  # ticks at 2.0, 2.5, 3.0 s (each with an 8 s future)
    spec = build_spec(RasterConfig())
    assert shard.meta["raster_spec"] == spec.fingerprint()
    assert tuple(shard.meta["raster_shape"]) == spec.shape
    assert a["agent_hist"].shape == (s, STORE_N_MAX, 20, 7)
    assert a["target_xy_m"].shape == (s, STORE_N_MAX, FUTURE_STEPS, 2)
    assert np.isfinite(a["target_xy_m"]).all() and np.isfinite(a["agent_hist"]).all()
    valid = a["agent_valid"] > 0
    assert valid.sum() > 10
    # Padding slots carry no target; most real agents were matched and followed.
    assert not a["target_valid"][~valid].any()
    assert (a["gt_id"][valid] >= 0).mean() > 0.7
    assert a["target_valid"][valid].all(-1).mean() > 0.5
    # Targets start next to the agent (0.1 s later) and the ego future is 80 steps.
    fut = targets_in_agent_frame(a["target_xy_m"], a["target_valid"], a["agent_pose_world"])
    first = np.linalg.norm(fut[..., 0, :], axis=-1)[a["target_valid"][..., 0]]
    assert np.percentile(first, 90) < 3.0
    assert a["ego_future_xy_m"].shape == (s, FUTURE_STEPS, 2)
    assert (a["ego_state"][:, 4] == 1.0).all()
    r = shard.raster(0)
    assert r.shape == spec.shape and r.dtype == np.float32 and np.isfinite(r).all()
    plan_ch = spec.channel_names.index("ego_plan")
    routed = shard.raster(0, route_plan=True)
    assert r[plan_ch].any() and not np.array_equal(r[plan_ch], routed[plan_ch])
    np.testing.assert_array_equal(np.delete(r, plan_ch, 0), np.delete(routed, plan_ch, 0))


@pytest.mark.slow
def test_generation_is_deterministic(data_dir: Path, tmp_path: Path):
    runs = plan_runs(["intersection"], [3], duration_s=11.0, n_agents=15, night_fraction=0.0)
    generate(tmp_path, runs, GenConfig(stride_ticks=5), workers=1)
    a = load_shard(list_shards(data_dir)[0]).arrays
    b = load_shard(list_shards(tmp_path)[0]).arrays
    for key in ("raster_idx", "raster_val", "agent_hist", "target_xy_m", "target_valid"):
        np.testing.assert_array_equal(a[key], b[key])


def test_tiny_training_decreases_loss(data_dir: Path):
    """Repeated steps on the 3 samples lower the WTA Laplace loss (the data is learnable)."""
    torch.manual_seed(0)
    data = SimSamples([load_shard(p) for p in list_shards(data_dir)], n_max=16)
    model = TrajectoryNet(model_config_for(data.meta, "tiny", 16, num_modes=3))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    bt = data.batch([0, 1, 2])
    losses = []
    for _ in range(15):
        traj, logits, scale = model.forward_logits(
            bt["raster"],
            bt["agent_hist"],
            bt["agent_state"],
            bt["agent_valid"],
            bt["ego_state"],
            bt["ego_plan"],
        )
        loss, _ = wta_laplace_loss(traj, logits, scale, bt["fut"], bt["fv"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0]


def test_split_runs_disjoint_and_seeded(tmp_path: Path):
    paths = [tmp_path / f"r{i}.npz" for i in range(10)]
    tr, va = split_runs(paths, 0.2, seed=0)
    assert len(va) == 2 and not set(tr) & set(va) and set(tr) | set(va) == set(paths)
    assert split_runs(paths, 0.2, seed=0) == (tr, va)
    with pytest.raises(SimDataError, match="at least 2 runs"):
        split_runs(paths[:1], 0.2, seed=0)


@pytest.mark.slow
def test_train_then_export_loads_in_onnx_predictor(data_dir: Path, tmp_path: Path):
    """train() writes a checkpoint + metrics; export_best gives a model the runtime accepts."""
    from prescient.service.predictor import OnnxPredictor

    two = _two_runs(data_dir, tmp_path)
    cfg = TrainConfig(max_steps=4, batch_size=2, n_max=8, val_every=2, model_size="tiny", num_modes=3)
    res = train(two, tmp_path / "run", cfg)
    assert res["steps"] == 4 and Path(res["best_checkpoint"]).is_file()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("val" in r for r in rows)
    onnx = tmp_path / "m.onnx"
    manifest = export_best(Path(res["best_checkpoint"]), onnx, n_max=12)
    fp = build_spec(RasterConfig()).fingerprint()
    assert manifest["raster_spec_version"] == fp and manifest["n_max"] == 12
    pred = OnnxPredictor(
        onnx, providers=("CPUExecutionProvider",), expected_spec_version=fp, expected_num_channels=58
    )
    assert pred.cfg.n_max == 12


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_weights(data_dir: Path, tmp_path: Path):
    """Stopped at step 3 and resumed, a 6-step run ends with the same weights, best checkpoint
    and metrics rows as an uninterrupted one; a resume with another config is refused."""
    from prescient.models.export import load_checkpoint
    from prescient.models.train_state import TrainStateError

    two = _two_runs(data_dir, tmp_path)
    cfg = TrainConfig(max_steps=6, batch_size=2, n_max=8, val_every=2, model_size="tiny", num_modes=3)
    whole = train(two, tmp_path / "whole", cfg)
    first = train(two, tmp_path / "split", cfg, stop_at=3)
    assert first["steps"] == 3 and not first["complete"]
    second = train(two, tmp_path / "split", cfg)
    assert second["steps"] == 6 and second["complete"] and whole["complete"]
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, _ = load_checkpoint(tmp_path / "whole" / "best.pt")
    mb, _ = load_checkpoint(tmp_path / "split" / "best.pt")
    assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))

    def steps(run: str) -> list:
        rows = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], "val" in r) for r in map(json.loads, rows)]

    assert steps("whole") == steps("split")
    with pytest.raises(TrainStateError, match="other train_config"):
        train(two, tmp_path / "split", dataclasses.replace(cfg, lr=0.5))


def test_block_order_visits_every_sample_once_in_shard_blocks():
    """Each pass of the block order is a permutation of all samples, cut into stretches that each
    hold the samples of one block of 2 shards; the same generator state gives the same order."""
    from prescient.models.shard_stream import block_permutation

    sizes = [5, 7, 3, 9, 4, 6]
    order = block_permutation(np.random.default_rng(0), sizes, block=2)
    assert sorted(order.tolist()) == list(range(sum(sizes)))
    shard_of = np.repeat(np.arange(len(sizes)), sizes)
    k = 0
    for pair in (
        np.random.default_rng(0).permutation(len(sizes)).reshape(-1, 2)
    ):  # the shard order drawn first
        n = sizes[pair[0]] + sizes[pair[1]]
        assert set(shard_of[order[k : k + n]].tolist()) == set(pair.tolist())
        k += n
    np.testing.assert_array_equal(order, block_permutation(np.random.default_rng(0), sizes, block=2))


@pytest.mark.slow
def test_lazy_shards_train_to_the_same_weights_as_loaded_ones_with_the_same_order(
    data_dir: Path, tmp_path: Path
):
    """Shards read on demand (a one-shard cache) give the same batches as loaded ones; a run
    with shards_in_memory trains through to its last step."""
    from prescient.models.shard_stream import LazyShard, ShardCache
    from prescient.models.train_sim import SimSamples

    two = _two_runs(data_dir, tmp_path)
    paths = list_shards(two)
    cache = ShardCache(1)
    lazy = SimSamples([LazyShard(p, cache) for p in paths], n_max=8)
    loaded = SimSamples([load_shard(p) for p in paths], n_max=8)
    assert len(lazy) == len(loaded)
    for items in ([0, 1], [len(lazy) - 1, 0]):
        a, b = lazy.batch(items), loaded.batch(items)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert cache.loads >= 2  # the one-shard cache reloaded when the batch crossed shards
    cfg = TrainConfig(
        max_steps=3, batch_size=2, n_max=8, val_every=3, model_size="tiny", num_modes=3, shards_in_memory=2
    )
    res = train(two, tmp_path / "run", cfg)
    assert res["complete"] and res["steps"] == 3
