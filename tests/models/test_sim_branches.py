"""Counterfactual samples (shard format 2), reproducible resumable sharding and the held-out split.

The scene: arterial, seed 3, 30 agents, 12 s, a sample every second (2, 3, 4 s). In ``keep`` the
ego changes lanes in front of a car coming up behind it, which brakes; under ``stop`` the ego
stays in its lane and the car drives on: one agent's future differs, the far ones do not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prescient.models.shards import FORMAT_VERSION, SimDataError, list_shards, load_shard
from prescient.models.sim_branches import parse_branches
from prescient.models.sim_data import FUTURE_STEPS, STORE_N_MAX, generate, generate_run
from prescient.models.sim_runs import GenConfig, parse_seeds, plan_runs
from prescient.models.train_sim import SimSamples

GEN = GenConfig(stride_ticks=10)
KINDS = ["keep", "slow", "stop", "route"]


def _runs(seeds: list[int] | None = None, duration_s: float = 12.0):
    return plan_runs(["arterial"], seeds or [3], duration_s=duration_s, n_agents=30, night_fraction=0.0)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("branches")
    generate(out, _runs(), GEN, workers=1)
    return out


@pytest.fixture(scope="module")
def shard(data_dir: Path):
    return load_shard(list_shards(data_dir)[0])


def test_branch_fields_have_the_documented_shapes(shard, data_dir: Path):
    a, s, b = shard.arrays, shard.num_samples, len(KINDS)
    assert shard.meta["format_version"] == FORMAT_VERSION == 2
    assert shard.branches == KINDS and s == 3
    assert a["branch_applied"].shape == (s, b)
    # route: this stretch of arterial has no junction choice within 8 s, so the branch is skipped.
    assert a["branch_applied"][:, :3].all() and not a["branch_applied"][:, 3].any()
    assert a["branch_ego_future_xy_m"].shape == (s, b, FUTURE_STEPS, 2)
    assert a["branch_ego_plan"].shape == (s, b, 16, 2)
    assert a["branch_plan_off"].shape == a["branch_diff_off"].shape == (s * b + 1,)
    k = int(a["branch_diff_off"][-1])
    assert a["branch_diff_slot"].shape == (k,) and a["branch_diff_xy_m"].shape == (k, FUTURE_STEPS, 2)
    assert a["branch_diff_valid"].shape == (k, FUTURE_STEPS)
    target, valid = shard.branch_targets(0, KINDS.index("stop"))
    assert target.shape == (STORE_N_MAX, FUTURE_STEPS, 2) and valid.shape == (STORE_N_MAX, FUTURE_STEPS)
    with pytest.raises(SimDataError, match="no branch 3"):
        shard.branch_targets(0, 3)
    index = json.loads((data_dir / "index.json").read_text())
    assert index["branch_samples"] == {"keep": 3, "route": 0, "slow": 3, "stop": 3}
    assert index["samples"] == 3 and index["split"] == "train" and index["maps"] == ["arterial"]
    assert index["generation"]["branches"] == KINDS and index["format_version"] == 2


def test_keep_branch_is_the_sample_and_stop_is_shorter(shard):
    a = shard.arrays
    keep, slow, stop = (KINDS.index(k) for k in ("keep", "slow", "stop"))
    # keep reproduces the run bit for bit (generation checks it too).
    np.testing.assert_array_equal(a["branch_ego_future_xy_m"][:, keep], a["ego_future_xy_m"])
    np.testing.assert_array_equal(a["branch_ego_plan"][:, keep], a["ego_plan"])
    for i in range(shard.num_samples):
        assert len(shard.branch_diff(i, keep)[0]) == 0
        np.testing.assert_array_equal(shard.raster(i, branch=keep), shard.raster(i))

    def path_m(xy: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.diff(xy, axis=-2), axis=-1).sum(-1)

    fut = a["branch_ego_future_xy_m"]
    assert (path_m(fut[:, keep]) > 35.0).all()  # ~7 m/s for 8 s
    assert (path_m(fut[:, stop]) < 0.25 * path_m(fut[:, keep])).all()
    assert (path_m(fut[:, stop]) < path_m(fut[:, slow])).all()
    assert (path_m(fut[:, slow]) < path_m(fut[:, keep])).all()
    # The raster differs between branches in the ego_plan channel only.
    ch = int(shard.meta["plan_channel"])
    r_keep, r_stop = shard.raster(0, branch=keep), shard.raster(0, branch=stop)
    assert not np.array_equal(r_keep[ch], r_stop[ch]) and r_stop[ch].any()
    np.testing.assert_array_equal(np.delete(r_keep, ch, 0), np.delete(r_stop, ch, 0))


def test_stop_changes_the_follower_and_not_far_agents(shard):
    a = shard.arrays
    keep, stop = KINDS.index("keep"), KINDS.index("stop")
    for i in range(shard.num_samples):
        t_stop, v_stop = shard.branch_targets(i, stop)
        t_keep, v_keep = a["target_xy_m"][i], a["target_valid"][i]
        changed = (t_stop != t_keep).any(axis=(1, 2)) | (v_stop != v_keep).any(axis=1)
        assert 1 <= changed.sum() <= 3, i  # the car behind the ego's lane change
        assert set(np.flatnonzero(changed)) == set(shard.branch_diff(i, stop)[0].tolist())
        # Far agents: never within 10 m of the ego, in either branch, over the 8 s.
        ego = a["branch_ego_future_xy_m"][i, [keep, stop]]  # (2, T, 2)
        d = np.linalg.norm(t_keep[None] - ego[:, None], axis=-1)  # (2, N, T)
        tracked = a["target_valid"][i].all(-1)
        far = tracked & (np.where(v_keep[None], d, np.inf).min(axis=(0, 2)) > 10.0)
        assert far.sum() >= 8
        assert not (changed & far).any()
        np.testing.assert_array_equal(t_stop[far], t_keep[far])


def test_ordinary_samples_unchanged_by_branching(shard):
    """The same run cut without branches gives bit-identical ordinary fields."""
    plain = generate_run(_runs()[0], GenConfig(stride_ticks=10, branches=()))
    assert not any(k.startswith("branch_") for k in plain)
    a = shard.arrays
    for key, value in plain.items():
        if key != "meta_json":
            np.testing.assert_array_equal(value, a[key], err_msg=key)


def test_batch_branch_variant_and_pairs(shard):
    data = SimSamples([shard], n_max=32)
    keep, stop = data.branch_index("keep"), data.branch_index("stop")
    assert data.available([0, 1]).tolist() == [[True, True, True, False]] * 2
    plain = data.batch([0, 1])
    as_keep = data.batch([0, 1], branch=[keep, keep])
    for k in plain:
        assert bool((plain[k] == as_keep[k]).all()), k
    pair = data.batch([0, 1], branch=[keep, keep], pair_branch=[stop, stop])
    assert pair["raster_b"].shape == pair["raster"].shape and pair["fut_b"].shape == (2, 32, FUTURE_STEPS, 2)
    assert not bool((pair["ego_plan"] == pair["ego_plan_b"]).all())
    changed = (pair["fut"] != pair["fut_b"]).any(-1).any(-1)  # (B, n_max)
    assert changed.any(dim=1).all()  # each scene: the follower's future differs
    assert int(changed.sum()) <= 6
    stop_only = data.batch([0], branch=[stop])
    assert bool((stop_only["fut"][0] == pair["fut_b"][0]).all())
    with pytest.raises(SimDataError, match="no branch"):
        data.batch([0], branch=[data.branch_index("route")])
    with pytest.raises(SimDataError, match="no 'turn' branch"):
        data.branch_index("turn")


def test_sparse_cells_rebuild_every_raster_variant(shard):
    """The batch's rasters come from sparse cells (scattered on the training device); they must
    equal :meth:`Shard.raster` for the actual future, the route plan and each branch."""
    stop = shard.branches.index("stop")
    for i in range(shard.num_samples):
        for route, branch in ((False, None), (True, None), (False, stop)):
            if branch is not None and not shard.has_branch(i, branch):
                continue
            idx, val = shard.raster_sparse(i, route, branch)
            assert len(np.unique(idx)) == len(idx)  # a cell once: scatter order cannot matter
            dense = np.zeros_like(shard.raster(i))
            dense.reshape(-1)[idx] = val
            assert np.array_equal(dense, shard.raster(i, route_plan=route, branch=branch)), (i, route, branch)
    data = SimSamples([shard], n_max=32)
    bt = data.batch([0, 1], route_mask=np.array([False, True]))
    assert np.array_equal(bt["raster"][1].numpy(), shard.raster(1, route_plan=True))
    plan = int(shard.meta["plan_channel"])
    assert not np.array_equal(shard.raster(1)[plan], shard.raster(1, route_plan=True)[plan])


def test_old_format_shard_still_loads(shard, tmp_path: Path):
    """A format-1 shard (no branch fields, written by np.savez_compressed) loads and batches."""
    meta = {k: v for k, v in shard.meta.items() if k not in ("branches", "branch_samples", "gen_config")}
    meta["format_version"] = 1
    arrays = {k: v for k, v in shard.arrays.items() if not k.startswith("branch_")}
    path = tmp_path / "intersection_s0001.npz"
    np.savez_compressed(path, meta_json=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    old = load_shard(path)
    assert old.branches == [] and old.num_samples == 3 and not old.has_branch(0, 0)
    np.testing.assert_array_equal(old.raster(1), shard.raster(1))
    data = SimSamples([old], n_max=8)
    assert data.branch_names == [] and data.batch([0, 2])["fut"].shape == (2, 8, FUTURE_STEPS, 2)
    with pytest.raises(SimDataError, match="no branch"):
        data.batch([0], branch=[0])
    mixed = SimSamples([old, shard], n_max=8)
    assert mixed.branch_names == KINDS and mixed.available([0, 3])[:, 0].tolist() == [False, True]


def test_resume_keeps_complete_shards_and_refuses_other_settings(data_dir: Path, shard):
    path = list_shards(data_dir)[0]
    before = path.stat().st_mtime_ns
    (data_dir / "arterial_s0004.tmp.npz").write_bytes(b"truncated")  # a killed writer's leftover
    index = generate(data_dir, _runs(), GEN, workers=1)
    assert path.stat().st_mtime_ns == before and index["shards"] == [path.name]
    with pytest.raises(SimDataError, match="other settings .*gen_config"):
        generate(data_dir, _runs(), GenConfig(stride_ticks=10, branches=("keep",)), workers=1)


def test_held_out_seeds_stay_out_of_training(tmp_path: Path, shard):
    with pytest.raises(SimDataError, match="held-out evaluation seeds"):
        generate(tmp_path, _runs([3, 101]), GEN, workers=1)
    held = load_shard(shard.path)
    held.meta = {**held.meta, "seed": 104}
    with pytest.raises(SimDataError, match="held-out evaluation seeds"):
        SimSamples([held], n_max=8)
    assert len(SimSamples([held], n_max=8, allow_held_out=True)) == 3


def test_parse_branches_and_seeds():
    assert parse_branches("keep, stop") == ("keep", "stop") and parse_branches("none") == ()
    with pytest.raises(SimDataError, match="unknown branch plans"):
        parse_branches("keep,fly")
    with pytest.raises(SimDataError, match="repeated"):
        parse_branches("stop,stop")
    assert parse_seeds("0-2") == [0, 1, 2]
    a = plan_runs(["roundabout", "intersection"], [0, 1], 20.0, 10, 0.5)
    b = plan_runs(["intersection"], [0, 1], 20.0, 10, 0.5)
    assert [r for r in a if r.scenario == "intersection"] == b  # a run does not depend on the other maps


@pytest.mark.slow
def test_shards_identical_whatever_the_workers(tmp_path: Path):
    """Two tiny runs with 1 and with 2 worker processes: the same shard bytes and the same manifest."""
    runs = plan_runs(["intersection", "t_junction"], [5], duration_s=11.0, n_agents=10, night_fraction=0.5)
    gen = GenConfig(stride_ticks=5)
    one, two = tmp_path / "one", tmp_path / "two"
    i1 = generate(one, runs, gen, workers=1)
    i2 = generate(two, runs, gen, workers=2)
    assert i1 == i2 and len(i1["shards"]) == 2 and i1["samples"] > 0
    for name in i1["shards"]:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert (one / "index.json").read_bytes() == (two / "index.json").read_bytes()


def test_cli_generate_maps_branches_and_held_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from prescient.service.app.cli import main

    out = tmp_path / "d"
    argv = ["data", "generate", "--out", str(out), "--maps", "t_junction,arterial", "--seeds", "3",
            "--duration", "11", "--agents", "10", "--stride", "10", "--branches", "keep,stop",
            "--workers", "1"]  # fmt: skip
    assert main(argv) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["maps"] == ["arterial", "t_junction"] and index["branches"] == ["keep", "stop"]
    assert index["shards"] == ["arterial_s0003.npz", "t_junction_s0003.npz"]
    assert "2 shards" in capsys.readouterr().out
    assert main([*argv[:7], "3,100", *argv[8:]]) == 1  # held-out seeds in a training folder
    assert "held-out" in capsys.readouterr().err


def test_pair_training_with_the_smooth_decoder_and_plan_tokens(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """train-sim on branched shards: about half the steps on counterfactual pairs (two different
    plans of one scene), basis decoder, plan attention, the acceleration term on every step,
    the soft mode target on plain and pair steps alike; the checkpoint keeps its options."""
    import shutil

    from prescient.models import train_sim
    from prescient.models.train_sim import TrainConfig, train

    shifts: list[float] = []
    soft: list[float] = []
    real = train_sim.counterfactual_pair_loss
    real_wta = train_sim.wta_laplace_loss

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        loss, stats = real(*args, **kwargs)
        shifts.append(stats["moved_fraction"])
        soft.append(kwargs["soft_target_m"])
        return loss, stats

    def spy_wta(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        soft.append(kwargs["soft_target_m"])
        return real_wta(*args, **kwargs)

    monkeypatch.setattr(train_sim, "counterfactual_pair_loss", spy)
    monkeypatch.setattr(train_sim, "wta_laplace_loss", spy_wta)
    accels: list[float] = []
    real_accel = train_sim.accel_match_loss

    def spy_accel(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = real_accel(*args, **kwargs)
        accels.append(float(out.detach()))
        return out

    monkeypatch.setattr(train_sim, "accel_match_loss", spy_accel)

    two = tmp_path / "data"
    two.mkdir()
    src = sorted(data_dir.glob("*.npz"))[0]
    for name in ("arterial_s0003.npz", "arterial_s0004.npz"):
        shutil.copy(src, two / name)
    cfg = TrainConfig(
        max_steps=6, batch_size=2, n_max=8, val_every=3, model_size="tiny", num_modes=3,
        decoder="basis", plan_attention=True, mixture_weight=0.1, pair_fraction=0.5, checkpoint_every=25,
        accel_weight=0.5, soft_target_m=1.5,
    )  # fmt: skip
    res = train(two, tmp_path / "run", cfg)
    assert res["complete"] and np.isfinite(res["best_val"]["min_ade_m"])
    assert 1 <= len(shifts) <= 5  # some steps were pairs, some plain
    assert len(accels) == 6 and all(np.isfinite(a) and a > 0 for a in accels)
    assert all(0.0 <= x <= 1.0 for x in shifts)
    assert soft == [1.5] * 6  # one call per step (validation does not go through these names)
    from prescient.models.export import load_checkpoint

    model, _ = load_checkpoint(Path(res["best_checkpoint"]))
    assert model.cfg.decoder == "basis" and model.cfg.plan_attention


def test_reaction_capture_summary_on_hand_made_shifts():
    from prescient.models.eval_counterfactual import _summary

    r = {
        "true": np.array([[10.0, 0.0], [0.0, 4.0], [0.05, 0.0], [0.0, 0.0]]),
        "pred": np.array([[4.0, 0.0], [0.0, -4.0], [0.3, 0.0], [0.0, 6.0]]),
        "ade_own": np.array([1.0, 2.0, 3.0, 3.0]),
        "ade_other": np.array([3.0, 4.0, 5.0, 5.0]),
    }
    s = _summary(r, react_m=1.0, still_m=0.1)
    assert (s["reacting"], s["unaffected"]) == (2, 2)
    assert s["capture_ratio_median"] == pytest.approx(0.7)  # 0.4 and 1.0
    assert s["cosine_median"] == pytest.approx(0.0)  # +1 and -1
    assert s["unaffected_pred_shift_median_m"] == pytest.approx(3.15)  # 0.3 and 6
    assert s["unaffected_pred_shift_p95_m"] == pytest.approx(0.3 + 0.95 * 5.7)
    # the agent that should not move but is predicted to move 6 m is a phantom reaction; the one
    # predicted to move 4 of its true 10 m is missed (under half)
    assert (s["phantom_share"], s["missed_share"]) == (0.5, 0.5)
    assert (s["min_ade_own_plan_m"], s["min_ade_other_plan_m"]) == (1.5, 3.5)


def test_eval_counterfactual_runs_a_model_on_both_plans_of_each_pair(data_dir: Path, tmp_path: Path):
    pytest.importorskip("torch")
    from prescient.models.eval_counterfactual import evaluate_counterfactual, format_report
    from prescient.models.export_tiny import write_tiny_onnx
    from prescient.service.predictor import OnnxPredictor

    meta = load_shard(list_shards(data_dir)[0]).meta
    c, h, w = meta["raster_shape"]
    path, _ = write_tiny_onnx(
        tmp_path, in_channels=c, raster_hw=(h, w), resolution_m_per_px=0.5, n_max=128, hist_steps=20,
        future_steps=80, plan_points=16, raster_spec_version=meta["raster_spec"], plan_attention=True,
    )  # fmt: skip
    pred = OnnxPredictor(path, providers=("CPUExecutionProvider",), intra_op_threads=1)
    rep = evaluate_counterfactual(pred, data_dir)
    stop = rep["pairs"]["keep-stop"]
    assert stop["agents"] > 0 and stop["reacting"] >= 1
    assert stop["capture_ratio_median"] is not None and np.isfinite(stop["capture_ratio_median"])
    assert "keep-stop" in format_report(rep)


def test_fine_tune_starts_from_a_checkpoint_and_weights_moved_agents(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``init_from`` starts from a checkpoint's weights (refused when the model differs);
    ``moved_weight`` reaches the shift loss of pair steps."""
    import shutil

    import torch

    from prescient.models import train_sim
    from prescient.models.export import load_checkpoint
    from prescient.models.train_sim import TrainConfig, train
    from prescient.service.model_io.manifest import sha256_file

    two = tmp_path / "data"
    two.mkdir()
    src = sorted(data_dir.glob("*.npz"))[0]
    for name in ("arterial_s0003.npz", "arterial_s0004.npz"):
        shutil.copy(src, two / name)
    base = dict(batch_size=2, n_max=8, val_every=2, model_size="tiny", num_modes=3, decoder="basis",
                plan_attention=True, checkpoint_every=25)  # fmt: skip
    first = train(two, tmp_path / "first", TrainConfig(max_steps=2, **base))
    start, _ = load_checkpoint(Path(first["best_checkpoint"]))

    kwargs: list[dict] = []
    real = train_sim.counterfactual_pair_loss

    def spy(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        kwargs.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(train_sim, "counterfactual_pair_loss", spy)
    cfg = TrainConfig(max_steps=2, pair_fraction=1.0, moved_weight=30.0,
                      init_from=first["best_checkpoint"], **base)  # fmt: skip
    train(two, tmp_path / "at0", cfg, stop_at=0)  # saves the state before any step
    at0 = torch.load(tmp_path / "at0" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(at0[k], v) for k, v in start.state_dict().items())
    fresh = train(two, tmp_path / "fresh", TrainConfig(max_steps=2, **base), stop_at=0)
    assert fresh["steps"] == 0
    other = torch.load(tmp_path / "fresh" / "last.pt", weights_only=True)["model"]
    assert not all(torch.equal(other[k], v) for k, v in start.state_dict().items())

    res = train(two, tmp_path / "ft", cfg)
    assert res["complete"] and len(kwargs) == 2
    assert all(kw["shift_kwargs"] == {"moved_weight": 30.0} for kw in kwargs)
    _, meta = load_checkpoint(Path(res["best_checkpoint"]))
    assert meta["init_from_sha256"] == sha256_file(Path(first["best_checkpoint"]))

    # The basis decoder's velocity step may change in a fine-tune (same weight shapes); it is
    # part of the run's identity only when off, so runs that keep it resume as before.
    no_step = train(two, tmp_path / "no_step", TrainConfig(**{**cfg.__dict__, "velocity_step": False}))
    assert no_step["complete"]
    smooth, smooth_meta = load_checkpoint(Path(no_step["best_checkpoint"]))
    assert smooth.cfg.basis_velocity_step is False and start.cfg.basis_velocity_step is True
    assert smooth_meta["train_config"]["velocity_step"] is False
    assert "velocity_step" not in meta["train_config"]

    with pytest.raises(train_sim.SimDataError, match="differs in num_modes"):
        train(two, tmp_path / "bad", TrainConfig(**{**cfg.__dict__, "num_modes": 4}))
    with pytest.raises(train_sim.SimDataError, match="no such checkpoint"):
        train(two, tmp_path / "bad2", TrainConfig(**{**cfg.__dict__, "init_from": str(tmp_path / "x.pt")}))


def test_fine_tune_of_the_shipped_model_from_its_recovered_checkpoint(data_dir: Path, tmp_path: Path):
    """`recover-checkpoint` on the shipped model with BatchNorm statistics from training runs
    (validation runs left out) gives a checkpoint train-sim starts a fine-tune from."""
    import shutil

    import torch

    from prescient.models.export import load_checkpoint
    from prescient.models.recover import RecoverError, recover_checkpoint, training_rasters
    from prescient.models.train_sim import TrainConfig, train

    shipped = Path(__file__).resolve().parents[2] / "models" / "shipped" / "prescient.onnx"
    if not shipped.is_file():
        pytest.skip("no shipped model")
    two = tmp_path / "data"
    two.mkdir()
    src = sorted(data_dir.glob("*.npz"))[0]
    for name in ("arterial_s0003.npz", "arterial_s0004.npz"):
        shutil.copy(src, two / name)
    assert sum(len(b) for b in training_rasters(two, 5, exclude={"arterial_s0003"})) == 5
    with pytest.raises(RecoverError, match="no training runs"):
        next(training_rasters(two, 5, exclude={"arterial_s0003", "arterial_s0004"}))
    ck = tmp_path / "shipped" / "best.pt"
    meta = recover_checkpoint(shipped, ck, two, samples=4)
    assert meta["batchnorm_rasters"] == 4 and meta["parity_max_abs"] <= 1e-4
    start, _ = load_checkpoint(ck)
    bn = start.stem[1]
    assert float(bn.running_var.mean()) != pytest.approx(1.0, abs=1e-3)  # real statistics
    cfg = TrainConfig(
        max_steps=2, batch_size=2, n_max=8, val_every=2, decoder="basis", plan_attention=True,
        pair_fraction=0.5, mixture_weight=0.1, accel_weight=1.0, init_from=str(ck), checkpoint_every=25,
        mode_scorer=start.cfg.mode_scorer,
    )  # fmt: skip
    res = train(two, tmp_path / "ft", cfg)
    assert res["complete"] and np.isfinite(res["best_val"]["min_ade_m"])
    tuned, _ = load_checkpoint(Path(res["best_checkpoint"]))
    assert not torch.equal(tuned.head[0].weight, start.head[0].weight)


def test_route_pair_fraction_pairs_the_actual_future_with_the_route():
    """With ``route_fraction=1`` every scene that has a route branch is paired (actual future,
    route); scenes without one keep uniform pairs of distinct plans; at 0 the draws (and so the
    random stream of older runs) are those of uniform pairs alone."""
    from prescient.models.sim_samples import choose_pairs

    route = KINDS.index("route")
    avail = np.array([[True, True, True, False]] * 20 + [[True, True, True, True]] * 20)
    a, b = choose_pairs(avail, np.random.default_rng(0), route, 1.0)
    assert np.all(a[20:] == -1) and np.all(b[20:] == route)
    assert np.all(a[:20] != b[:20]) and np.all(b[:20] != route) and np.all(a[:20] != route)
    half_a, half_b = choose_pairs(avail, np.random.default_rng(0), route, 0.5)
    paired = (half_a[20:] == -1) & (half_b[20:] == route)
    assert 0 < paired.sum() < 20
    u1 = choose_pairs(avail, np.random.default_rng(1))
    u2 = choose_pairs(avail, np.random.default_rng(1), -1, 0.7)  # no route index: ignored
    assert all(np.array_equal(x, y) for x, y in zip(u1, u2))
    assert choose_pairs(np.zeros((2, 4), bool), np.random.default_rng(0))[1].tolist() == [-1, -1]
