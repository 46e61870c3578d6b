"""Mode scorer (``ModelConfig.mode_scorer``): each mode's logit sees its own path and the raster
features under it; it starts as the model without it and can be trained alone (issue #18)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from prescient.models.export import export_onnx, load_checkpoint, onnx_parity, random_inputs
from prescient.models.export_tiny import build_tiny_model
from prescient.models.net import TrajectoryNet
from prescient.models.net_scorer import ModeScorer
from prescient.models.shards import SimDataError, list_shards
from prescient.models.train_sim import TrainConfig, train
from prescient.models.train_validate import freeze_for
from prescient.service.model_io.config import INPUT_NAMES
from tests.models.test_sim_data import generate_small_run

OPTIONS = dict(decoder="basis", plan_attention=True)


def _feed(model: TrajectoryNet, seed: int = 0) -> list[torch.Tensor]:
    feed = random_inputs(model.cfg, 2, seed=seed, n_valid=4)
    return [torch.from_numpy(feed[n]) for n in INPUT_NAMES]


def _with_scorer(base: TrajectoryNet) -> TrajectoryNet:
    import dataclasses

    model = TrajectoryNet(dataclasses.replace(base.cfg, mode_scorer=True))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("scorer.") for k in missing)
    return model.eval()


def test_scorer_starts_as_the_model_without_it_then_changes_only_the_probabilities():
    base = build_tiny_model(**OPTIONS).eval()
    model = _with_scorer(base)
    feed = _feed(base)
    with torch.no_grad():
        before = base(*feed)
        same = model(*feed)
        for x, y in zip(before, same, strict=True):
            torch.testing.assert_close(x, y, atol=0, rtol=0)
        torch.nn.init.normal_(model.scorer.net[-1].weight, std=0.5)
        traj, probs, scale = model(*feed)
    torch.testing.assert_close(traj, before[0], atol=0, rtol=0)
    torch.testing.assert_close(scale, before[2], atol=0, rtol=0)
    assert float((probs - before[1]).abs().max()) > 1e-3
    np.testing.assert_allclose(probs.sum(-1).numpy(), 1.0, atol=1e-5)


def test_scorer_samples_the_features_under_each_path_in_the_ego_frame():
    """A feature map whose two channels are the grid coordinates themselves: bilinear sampling
    returns each path point's position, so what the scorer reads under a mode is exactly where
    that mode is (agent frame -> ego frame -> raster), checked against a rotation done by hand."""
    model = build_tiny_model(**OPTIONS, mode_scorer=True).eval()
    scorer: ModeScorer = model.scorer
    h = w = 16
    xs = (2 * torch.arange(w) + 1) / w - 1  # grid x of pixel centres (align_corners=False)
    ys = (2 * torch.arange(h) + 1) / h - 1
    fmap = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)])[None]  # (1, 2, h, w)
    yaw, pos = 0.7, (3.0, -2.0)
    agent_state = torch.tensor([[[pos[0], pos[1], math.cos(yaw), math.sin(yaw)]]])
    t = torch.arange(1, model.cfg.future_steps + 1, dtype=torch.float32)[:, None] * 0.1
    traj = torch.stack([torch.cat([2.0 * t, 0.5 * t], -1), torch.cat([-1.0 * t, 1.5 * t], -1)])[None, None]
    got = scorer.sample_under(traj, agent_state, fmap, model.grid_from_ego)  # (1, 1, K, S, C)
    for k in range(2):
        for j, step in enumerate(scorer.sample_idx.tolist()):
            ax, ay = traj[0, 0, k, step].tolist()
            ex = pos[0] + math.cos(yaw) * ax - math.sin(yaw) * ay
            ey = pos[1] + math.sin(yaw) * ax + math.cos(yaw) * ay
            g = model.grid_from_ego @ torch.tensor([ex, ey, 1.0])
            inside = bool((g.abs() < 1 - 1 / w).all())
            if inside:
                torch.testing.assert_close(got[0, 0, k, j], g, atol=1e-5, rtol=0)
    assert got.shape == (1, 1, 2, len(scorer.sample_idx), 2)


def test_scorer_sees_the_plan_relative_to_each_path_point_in_the_agent_frame():
    """The plan point at each path point's time, minus the point, rotated into the agent's frame
    by hand; an invalid plan gives zeros, and a plan moved away changes the probabilities."""
    model = build_tiny_model(**OPTIONS, mode_scorer=True).eval()
    scorer: ModeScorer = model.scorer
    cfg = model.cfg
    yaw, pos = 0.7, (3.0, -2.0)
    agent_state = torch.tensor([[[pos[0], pos[1], math.cos(yaw), math.sin(yaw)]]])
    t = torch.arange(1, cfg.future_steps + 1, dtype=torch.float32)[:, None] * cfg.dt_s
    traj = torch.cat([2.0 * t, 0.5 * t], -1)[None, None, None]  # (1, 1, 1, T, 2) agent frame
    pts = traj.index_select(3, scorer.point_idx)
    tp = (1 + torch.arange(cfg.plan_points) * (cfg.future_steps - 1) / (cfg.plan_points - 1)) * cfg.dt_s
    plan = torch.stack([5.0 * tp, -1.0 * tp], -1)[None]  # (1, P, 2) ego frame, straight at 5 m/s
    got = scorer.plan_gap(pts, agent_state, plan, torch.ones(1))
    spacing_s = float(tp[1] - tp[0])
    for j, (step, i) in enumerate(zip(scorer.point_idx.tolist(), scorer.plan_idx.tolist(), strict=True)):
        time_s, plan_s = (step + 1) * cfg.dt_s, float(tp[i])
        assert abs(plan_s - time_s) <= spacing_s / 2 + 1e-6  # the plan point nearest in time
        px, py = 5.0 * plan_s - pos[0], -1.0 * plan_s - pos[1]  # that plan point, from the agent
        ax = math.cos(yaw) * px + math.sin(yaw) * py - 2.0 * time_s
        ay = -math.sin(yaw) * px + math.cos(yaw) * py - 0.5 * time_s
        torch.testing.assert_close(got[0, 0, 0, j, :2], torch.tensor([ax, ay]) / 10.0, atol=1e-5, rtol=0)
    assert float(scorer.plan_gap(pts, agent_state, plan, torch.zeros(1)).abs().max()) == 0.0

    torch.nn.init.normal_(scorer.net[-1].weight, std=0.5)
    feed = _feed(model)
    with torch.no_grad():
        probs = model(*feed)[1]
        feed[5] = feed[5] + 20.0  # the same scene under a plan 20 m away
        moved = model(*feed)[1]
    assert float((probs - moved).abs().max()) > 1e-3


def test_scorer_ranks_modes_against_each_other_not_how_far_the_fan_goes():
    """Moving every mode by the same offset (the plan letting a car go further) leaves the
    correction alone when the features under the paths and the plan say nothing new: the scorer
    cannot pull a reaction back towards how far agents usually go."""
    model = build_tiny_model(**OPTIONS, mode_scorer=True).eval()
    scorer: ModeScorer = model.scorer
    torch.nn.init.normal_(scorer.net[-1].weight, std=0.5)
    cfg, d = model.cfg, model.cfg.d_model
    gen = torch.Generator().manual_seed(0)
    k, t = cfg.num_modes, cfg.future_steps
    traj = torch.randn(1, 2, k, t, 2, generator=gen).cumsum(3)
    token, base = torch.randn(1, 2, d, generator=gen), torch.randn(1, 2, k, generator=gen)
    agent_state = torch.tensor([[[0.0, 0.0, 1.0, 0.0], [5.0, 1.0, 0.0, 1.0]]])
    channels = cfg.stage_channels[-2 if len(cfg.stage_channels) > 1 else -1]
    fmap = torch.ones(1, channels, 64, 64)  # the same features everywhere on the map
    plan, no_plan = torch.zeros(1, cfg.plan_points, 2), torch.zeros(1)
    ramp = torch.linspace(0.0, 1.0, t)[:, None] * torch.tensor([4.0, 0.5])  # each mode 4 m further by 8 s

    def score(paths: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return scorer(token, paths, base, agent_state, fmap, model.grid_from_ego, cfg.dt_s, plan, no_plan)

    before = score(traj)
    torch.testing.assert_close(score(traj + ramp), before, atol=1e-5, rtol=0)
    assert float((score(traj * 1.5) - before).abs().max()) > 1e-3  # the fan's shape still matters


def test_paths_reach_the_scorer_detached():
    model = build_tiny_model(**OPTIONS, mode_scorer=True)
    torch.nn.init.normal_(model.scorer.net[-1].weight, std=0.5)
    feed = _feed(model)
    traj, logits, _ = model.forward_logits(*feed)
    (g_path,) = torch.autograd.grad(traj.sum(), model.head[-1].weight, retain_graph=True)
    (g_logit,) = torch.autograd.grad(logits.sum(), model.head[-1].weight, retain_graph=True)
    per_mode = model.per_mode
    rows = torch.arange(g_logit.shape[0])
    path_rows = rows % per_mode != per_mode - 1  # every head output but the logits
    assert float(g_path[path_rows].abs().sum()) > 0
    assert float(g_logit[path_rows].abs().max()) == 0.0  # the logits do not pull the paths


def test_scorer_onnx_export_parity(tmp_path: Path):
    model = build_tiny_model(**OPTIONS, mode_scorer=True)
    torch.nn.init.normal_(model.scorer.net[-1].weight, std=0.5)
    path = tmp_path / "scorer.onnx"
    man = export_onnx(model, path)
    assert man["model_config"]["mode_scorer"] is True
    assert onnx_parity(model, path, seeds=(0, 1)) <= 1e-4
    assert onnx_parity(model, path, seeds=(2,), n_valid=3) <= 1e-4


def test_freeze_for_refuses_a_part_the_model_lacks():
    model = build_tiny_model(**OPTIONS)
    with pytest.raises(ValueError, match="no such part"):
        freeze_for(model, "scorer")
    assert len(freeze_for(model, None)) == len(list(model.parameters()))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = generate_small_run(tmp_path_factory.mktemp("scorer_data"))
    two = out / "two"
    two.mkdir()
    src = list_shards(out)[0]
    for name in ("intersection_s0003.npz", "intersection_s0004.npz"):
        shutil.copy(src, two / name)
    return two


def test_train_only_the_scorer_from_a_checkpoint_without_it(data_dir: Path, tmp_path: Path):
    """The fine-tune adds the scorer to a checkpoint that has none and trains it alone: every
    other weight and BatchNorm statistic is unchanged; the checkpoint kept is chosen by the mode
    cross-entropy; validation reports the most likely mode's errors."""
    base = dict(batch_size=2, n_max=8, val_every=2, model_size="tiny", num_modes=3, **OPTIONS)
    first = train(data_dir, tmp_path / "first", TrainConfig(max_steps=2, **base))
    start, _ = load_checkpoint(Path(first["best_checkpoint"]))

    cfg = TrainConfig(max_steps=4, lr=1e-2, mode_scorer=True, train_only="scorer",
                      init_from=first["best_checkpoint"], **base)  # fmt: skip
    res = train(data_dir, tmp_path / "sc", cfg)
    assert res["complete"]
    rows = [json.loads(x) for x in (tmp_path / "sc" / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val"] for r in rows if "val" in r]
    assert {"ml_ade_m", "ml_fde_m", "top_closest"} <= set(vals[0])
    assert res["best_val"]["ce"] == min(v["ce"] for v in vals)
    last = torch.load(tmp_path / "sc" / "last.pt", weights_only=True)["model"]
    for k, v in start.state_dict().items():
        assert torch.equal(last[k], v), k  # weights and BatchNorm running statistics
    assert any(float(last[k].abs().sum()) > 0 for k in last if k.startswith("scorer.net.2"))
    trained, meta = load_checkpoint(Path(res["best_checkpoint"]))
    assert trained.cfg.mode_scorer and meta["train_config"]["train_only"] == "scorer"

    with pytest.raises(SimDataError, match="needs --init-from"):
        train(data_dir, tmp_path / "bad", TrainConfig(**{**cfg.__dict__, "init_from": None}))
    with pytest.raises(SimDataError, match="no such part"):
        train(data_dir, tmp_path / "bad2", TrainConfig(**{**cfg.__dict__, "mode_scorer": False}))
    # A model without the scorer does not start from one with it (its weights would be dropped).
    with pytest.raises(SimDataError, match="differs in mode_scorer"):
        train(
            data_dir,
            tmp_path / "bad3",
            TrainConfig(**{**base, "max_steps": 1, "init_from": res["best_checkpoint"]}),
        )
