"""ETH/UCY protocol on a synthetic directory in the standard layout, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from prescient.models.cli import register
from prescient.models.eth_ucy import (
    EthUcyError,
    cv_metrics,
    eth_config,
    list_scenes,
    load_split,
    window_inputs,
    windows_from_array,
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
