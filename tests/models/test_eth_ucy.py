"""ETH/UCY protocol on a synthetic directory in the standard layout, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from prescient.models.cli import register
from prescient.models.eth_ucy import (
    EthUcyError,
    Window,
    cv_fan_metrics,
    cv_metrics,
    eth_config,
    list_scenes,
    load_split,
    model_metrics,
    window_inputs,
    windows_from_array,
)
from prescient.models.eth_ucy_metrics import (
    FAN_SIZE,
    LOG_PDF_FLOOR,
    cv_fan_predictions,
    kde_logpdf,
    kde_nll,
)
from prescient.models.eth_ucy_table import format_table
from prescient.models.eth_ucy_train import (
    EthTrainConfig,
    _augmented_inputs,
    lr_factor,
)


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{f:.1f}\t{p:.1f}\t{x:.2f}\t{y:.2f}\n" for f, p, x, y in rows))


def _straight_rows(n_frames=30, peds=3):
    rows = []
    for k in range(n_frames):
        for p in range(peds):
            rows.append((10 * k, p, 0.5 * k * 0.4 * (p + 1), float(p)))
    return rows


def _scene_dir(root):
    for split in ("train", "val", "test"):
        _write(root / "toy" / split / "a.txt", _straight_rows())
    return root


def test_windows_need_20_frames_and_two_peds():
    """30 frames give 11 windows; a pedestrian missing one frame is not counted."""
    data = np.array(_straight_rows(), float)
    assert len(windows_from_array(data)) == 11
    w = windows_from_array(data)[0]
    assert w.obs_m.shape == (3, 8, 2) and w.fut_m.shape == (3, 12, 2)
    holed = data[~((data[:, 1] == 2) & (data[:, 0] == 50))]
    assert all(x.obs_m.shape[0] == 2 for x in windows_from_array(holed)[:5])
    lonely = data[data[:, 1] == 0]
    assert windows_from_array(lonely) == []


def test_cv_is_exact_on_straight_lines(tmp_path):
    """Constant velocity has zero error on constant-velocity pedestrians."""
    root = _scene_dir(tmp_path)
    m = cv_metrics(load_split(root / "toy", "test"))
    assert m["n"] == 33 and m["min_ade_m"] < 1e-5 and m["min_fde_m"] < 1e-5


def test_window_inputs_targets_in_agent_frame(tmp_path):
    """Targets of a pedestrian walking along +x at 0.2*(p+1) m/step are on the agent x axis."""
    w = load_split(_scene_dir(tmp_path) / "toy", "train")[0]
    it = window_inputs(eth_config(16), w, rotation_rad=0.7)
    slot = int(np.flatnonzero(it["agent_index"] == 1)[0])
    np.testing.assert_allclose(it["future_m"][slot, :, 1], 0.0, atol=1e-5)
    np.testing.assert_allclose(it["future_m"][slot, -1, 0], 12 * 0.4, atol=1e-5)
    assert it["raster"].sum() == 8 * 3  # every observed position inside the 32 m raster


def test_bad_layout_and_bad_file_raise(tmp_path):
    """A root without SCENE/{train,val,test} or a file with 3 columns gives a clear error."""
    with pytest.raises(EthUcyError, match="no SCENE"):
        list_scenes(tmp_path)
    root = _scene_dir(tmp_path)
    (root / "toy" / "test" / "a.txt").write_text("1\t2\t3\n")
    with pytest.raises(EthUcyError, match="4 columns"):
        load_split(root / "toy", "test")


def _fan(vel=(1.2, -0.3)):
    return cv_fan_predictions(np.array([[2.0, 1.0]]), np.array([vel], float), future_steps=12, dt_s=0.4)


def test_cv_fan_has_20_distinct_paths_cv_first_and_is_deterministic():
    """20 different paths, path 0 is exactly CV, the rest stay within +-25 deg and 0.6-1.3x speed."""
    traj, probs = _fan()
    assert traj.shape == (1, FAN_SIZE, 12, 2) and FAN_SIZE == 20
    np.testing.assert_allclose(probs, 1.0 / 20)
    ends = traj[0, :, -1]
    assert len({tuple(np.round(e, 6)) for e in ends}) == 20
    cv = np.array([2.0, 1.0]) + np.array([1.2, -0.3]) * 0.4 * np.arange(1, 13)[:, None]
    np.testing.assert_allclose(traj[0, 0], cv, atol=1e-12)
    disp = ends - [2.0, 1.0]
    rel = np.degrees(np.arctan2(disp[:, 1], disp[:, 0]) - np.arctan2(-0.3, 1.2))
    speed = np.linalg.norm(disp, axis=1) / np.linalg.norm(cv[-1] - [2.0, 1.0])
    assert np.all(np.abs(rel) <= 25) and np.all((speed >= 0.6 - 1e-9) & (speed <= 1.3 + 1e-9))
    np.testing.assert_array_equal(_fan()[0], traj)


def test_kde_logpdf_matches_scipy_gaussian_kde():
    """The vectorised KDE equals scipy's weighted gaussian_kde (Scott bandwidth) set by set."""
    from scipy.stats import gaussian_kde

    rng = np.random.default_rng(3)
    samples, query = rng.normal(size=(4, 20, 2)), rng.normal(size=(4, 2))
    weights = rng.dirichlet(np.ones(20), size=4)
    ours = kde_logpdf(samples, weights, query)
    ref = [gaussian_kde(samples[i].T, weights=weights[i]).logpdf(query[i][:, None])[0] for i in range(4)]
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_kde_nll_fan_centred_on_truth_beats_fan_displaced_5m():
    """A fan whose path 0 is the truth scores a lower NLL than the same fan shifted by 5 m."""
    traj, probs = _fan()
    gt = traj[:, 0]
    centred, jit, skip = kde_nll(traj, probs, gt)
    displaced, _, _ = kde_nll(traj + [5.0, 0.0], probs, gt)
    assert (jit, skip) == (0, 0)
    assert centred[0] < displaced[0] - 5.0 and displaced[0] <= -LOG_PDF_FLOOR


def test_kde_nll_weights_follow_mode_probabilities():
    """Putting the weight on the modes near the truth lowers the NLL."""
    traj, probs = _fan()
    gt = traj[:, 0]
    near = probs.copy()
    near[:, :5] *= 10.0  # speed factor 1.0: the five paths nearest the truth
    assert kde_nll(traj, near, gt)[0][0] < kde_nll(traj, probs, gt)[0][0]


def test_kde_nll_identical_samples_are_jittered_and_one_hot_weights_skipped():
    """20 identical positions (standing pedestrian) get a finite NLL; all weight on one mode is skipped."""
    traj, probs = _fan(vel=(0.0, 0.0))
    gt = traj[:, 0]
    nll, jittered, skipped = kde_nll(traj, probs, gt)
    assert np.isfinite(nll[0]) and nll[0] < 0 and (jittered, skipped) == (12, 0)
    assert kde_nll(traj, probs, gt + 1.0)[0][0] == pytest.approx(-LOG_PDF_FLOOR)
    one_hot = np.zeros_like(probs)
    one_hot[:, 0] = 1.0
    nll, jittered, skipped = kde_nll(traj, one_hot, gt)
    assert np.isnan(nll[0]) and skipped == 12


def test_cv_fan_metrics_on_straight_lines_contain_cv(tmp_path):
    """On constant-velocity walkers the fan's best path and most-likely path are exact."""
    windows = load_split(_scene_dir(tmp_path) / "toy", "test")
    fan, cv = cv_fan_metrics(windows), cv_metrics(windows)
    assert fan["n"] == cv["n"] == 33 and fan["min_ade_m"] < 1e-5 and fan["ml_fde_m"] < 1e-5
    assert np.isfinite(fan["kde_nll"]) and fan["kde_n"] == 33 and "kde_nll" not in cv


def test_model_metrics_kde_rewards_an_oracle(tmp_path):
    """With kde=True, a stub net fanned around the truth beats the same fan 5 m off."""
    windows = load_split(_scene_dir(tmp_path) / "toy", "test")[:3]
    cfg = eth_config(16)
    offsets = np.random.default_rng(0).normal(0.0, 0.3, (20, 1, 2)).astype(np.float32)

    def stub(shift_m):
        def run_batch(feed):
            traj = feed["future_m"][:, :, None] + offsets + np.float32(shift_m)  # (B, N, K, T, 2)
            probs = np.full(traj.shape[:3], 1 / 20, np.float32)
            return traj, probs, np.ones_like(traj)

        return run_batch

    good = model_metrics(stub(0.0), cfg, windows, kde=True)
    bad = model_metrics(stub(5.0), cfg, windows, kde=True)
    assert good["kde_n"] == good["n"] == 9 and good["kde_nll"] < bad["kde_nll"] - 5.0
    assert "kde_nll" not in model_metrics(stub(0.0), cfg, windows)


def test_format_table_has_fan_and_kde_columns_and_reads_old_results(tmp_path):
    """New columns appear; CV has "-" for KDE NLL; results without cv_fan still format."""
    windows = load_split(_scene_dir(tmp_path) / "toy", "test")
    cv, fan = cv_metrics(windows), cv_fan_metrics(windows)
    model = {**fan, "kde_nll": 1.5}
    new = {"scene": "toy", "model": model, "cv": cv, "cv_fan": fan}
    old = {"scene": "old", "model": dict(cv), "cv": cv}
    out = format_table([new, old])
    header = out.splitlines()[0]
    for col in ("model KDE NLL", "CV ADE/FDE", "CV KDE NLL", "CV-fan minADE20/minFDE20", "CV-fan KDE NLL"):
        assert col in header
    toy = next(line for line in out.splitlines() if line.startswith("| toy |"))
    cells = [c.strip() for c in toy.strip("|").split("|")]
    assert cells[:2] == ["toy", "33"] and cells[4] == "1.50" and cells[6] == "-"
    assert cells[7] == "0.00/0.00" and cells[8] == f"{fan['kde_nll']:.2f}"
    old_cells = [c.strip() for c in out.splitlines()[3].strip("|").split("|")]
    assert old_cells[0] == "old" and old_cells[4] == old_cells[7] == old_cells[8] == "-"
    mean = [c.strip() for c in out.splitlines()[4].strip("|").split("|")]
    assert mean[0] == "mean" and mean[8] == "-" and len(mean) == len(cells)


def test_lr_factor_warms_up_then_decays_to_one_percent():
    """Cosine: rises linearly over 5 % of the steps to the peak, then falls to 0.01; else flat."""
    f = [lr_factor(s, 200, cosine=True) for s in range(200)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:])) and f[-1] == pytest.approx(0.01, abs=1e-3)
    assert {lr_factor(s, 200, cosine=False) for s in (0, 100, 199)} == {1.0}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"select": "val_loss"},
        {"mixture_weight": float("nan")},
        {"lr": 0.0},
        {"epochs": 0},
        {"scale_aug": 0.5},
        {"decoder": "spline"},
    ],
)
def test_train_config_rejects_bad_values(kwargs):
    """A bad schedule is refused with a reason before any data is read."""
    with pytest.raises(EthUcyError, match="must be"):
        EthTrainConfig(**kwargs)


def test_cli_eval_eth_ucy_bad_lr_is_one_line_error(tmp_path):
    """--lr -1 ends with the config's reason, not a traceback from inside training."""
    import argparse

    from prescient.bus.errors import StartupError

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["eval", "eth-ucy", "--data", str(_scene_dir(tmp_path)), "--lr", "-1"])
    with pytest.raises(StartupError, match="lr > 0"):
        args.func(args)


def test_scale_augmentation_scales_speeds_and_keeps_the_stream_when_off(tmp_path):
    """Off: the same inputs as a plain yaw draw. On: the future is the truth times f in [1/2, 2]."""
    w = load_split(_scene_dir(tmp_path) / "toy", "train")[0]
    cfg = eth_config(16)
    plain = window_inputs(cfg, w, rotation_rad=float(np.random.default_rng(3).uniform(-np.pi, np.pi)))
    off = _augmented_inputs(cfg, w, np.random.default_rng(3), EthTrainConfig(scale_aug=1.0, flip_aug=False))
    np.testing.assert_array_equal(off["future_m"], plain["future_m"])
    np.testing.assert_array_equal(off["raster"], plain["raster"])
    factors = set()
    for seed in range(20):
        on = _augmented_inputs(
            cfg, w, np.random.default_rng(seed), EthTrainConfig(scale_aug=2.0, flip_aug=False)
        )
        # Per pedestrian (slots are ordered by distance, and p0/p2 tie): same pedestrian, scaled.
        a, b = np.argsort(on["agent_index"][:3]), np.argsort(plain["agent_index"][:3])
        f = on["future_m"][a, -1, 0] / plain["future_m"][b, -1, 0]
        np.testing.assert_allclose(f, f[0], rtol=1e-4)  # one factor per window
        factors.add(round(float(f[0]), 3))
    assert min(factors) >= 0.5 - 1e-3 and max(factors) <= 2.0 + 1e-3 and len(factors) == 20


def test_flip_augmentation_mirrors_about_half_the_windows_and_none_when_off():
    """A pedestrian turning left turns right in a mirrored window (agent frame); off: no mirror."""
    t = np.arange(20) * 0.4
    turn = np.stack([np.sin(0.2 * t) / 0.2, (1 - np.cos(0.2 * t)) / 0.2], -1)  # left turn, 1 m/s
    w = Window(np.stack([turn, turn + [0.0, 5.0]])[:, :8], np.stack([turn, turn + [0.0, 5.0]])[:, 8:])
    cfg = eth_config(16)
    tc_off, tc_on = EthTrainConfig(scale_aug=1.0, flip_aug=False), EthTrainConfig(scale_aug=1.0)
    lateral = []
    for seed in range(40):
        off = _augmented_inputs(cfg, w, np.random.default_rng(seed), tc_off)
        assert off["future_m"][0, -1, 1] > 0.5  # left of the agent's heading
        on = _augmented_inputs(cfg, w, np.random.default_rng(seed), tc_on)
        np.testing.assert_allclose(abs(on["future_m"][:2]), abs(off["future_m"][:2]), atol=1e-4)
        lateral.append(float(on["future_m"][0, -1, 1]))
    mirrored = np.mean(np.array(lateral) < 0)
    assert 0.25 < mirrored < 0.75


@pytest.mark.slow
def test_train_scene_same_seed_same_weights(tmp_path):
    """The default recipe (augmentation, schedule, batch order) is a function of the seed only."""
    import torch

    from prescient.models.eth_ucy_train import train_scene

    scene = _scene_dir(tmp_path / "data") / "toy"
    tc = EthTrainConfig(epochs=2, seed=5)
    runs = [train_scene(scene, tc, out_dir=tmp_path / name) for name in ("a", "b")]
    wa, wb = (torch.load(tmp_path / n / "toy.pt", weights_only=True) for n in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert runs[0]["model"] == runs[1]["model"]
    other = train_scene(scene, EthTrainConfig(epochs=2, seed=6), out_dir=tmp_path / "c")
    wc = torch.load(tmp_path / "c" / "toy.pt", weights_only=True)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa) and other["model"] != runs[0]["model"]


@pytest.mark.slow
def test_cli_recipe_flags_reach_training_and_checkpoint(tmp_path):
    """Flags override the default recipe, and the config is recorded in results and checkpoint."""
    import argparse
    import json

    from prescient.models.export import load_checkpoint

    root = _scene_dir(tmp_path / "data")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    flags = ["--mixture-weight", "0", "--soft-target", "0", "--no-cosine", "--scale-aug", "1.5"]
    flags += ["--no-flip-aug", "--decoder", "basis"]
    args = parser.parse_args(
        ["train", "eth-ucy", "--data", str(root), "--epochs", "2", *flags, "--select", "min_ml_ade"]
        + ["--out", str(tmp_path / "r.json"), "--checkpoints", str(tmp_path / "ck")]
    )
    assert args.func(args) == 0
    res = json.loads((tmp_path / "r.json").read_text())["results"][0]
    want = {"mixture_weight": 0.0, "soft_target_m": 0.0, "cosine": False, "scale_aug": 1.5, "epochs": 2}
    want |= {"flip_aug": False, "decoder": "basis"}
    assert {k: res["train_config"][k] for k in want} == want and res["train_config"]["select"] == "min_ml_ade"
    net, meta = load_checkpoint(tmp_path / "ck" / "toy.pt")
    assert net.cfg.decoder == "basis"
    assert meta["train_config"] == res["train_config"] and res["best_epoch"] in (0, 1)
    assert np.isfinite(res["model"]["ml_ade_m"])


@pytest.mark.slow
def test_cli_eval_eth_ucy_runs_on_any_directory(tmp_path, capsys):
    """`prescient eval eth-ucy --data DIR` trains briefly and prints the per-scene table."""
    import argparse

    root = _scene_dir(tmp_path)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["eval", "eth-ucy", "--data", str(root), "--epochs", "1", "--out", str(tmp_path / "r.json")]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| toy | 33 |" in out and "CV ADE/FDE" in out
    assert (tmp_path / "r.json").is_file()


def test_cli_export_tiny_writes_model_and_manifest(tmp_path, capsys):
    """`prescient export --tiny --out X.onnx` writes the model, the manifest and checks parity."""
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["export", "--tiny", "--out", str(tmp_path / "t.onnx")])
    assert args.func(args) == 0
    assert (tmp_path / "t.onnx").is_file() and (tmp_path / "t.manifest.json").is_file()
    assert "max abs diff" in capsys.readouterr().out
