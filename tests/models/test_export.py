"""ONNX export: numeric parity with PyTorch, manifest contents, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import torch

from prescient.models.export import export_onnx, load_checkpoint, onnx_parity, random_inputs, save_checkpoint
from prescient.models.export_tiny import build_tiny_model, write_tiny_onnx
from prescient.service.model_io.config import INPUT_NAMES, OUTPUT_NAMES
from prescient.service.model_io.manifest import manifest_path_for, sha256_file


def test_export_parity_random_inputs_within_1e4(tmp_path):
    """onnxruntime matches PyTorch within 1e-4 on random inputs, full and partial validity."""
    path, _ = write_tiny_onnx(tmp_path)
    model = build_tiny_model()
    assert onnx_parity(model, path, seeds=(0, 1, 2)) <= 1e-4
    assert onnx_parity(model, path, seeds=(3,), n_valid=3) <= 1e-4


def test_export_manifest_matches_file_and_config(tmp_path):
    """The manifest holds the file's sha256, the I/O names and shapes, K, T, dt, N_MAX, spec."""
    path, mpath = write_tiny_onnx(tmp_path)
    assert mpath == manifest_path_for(path)
    man = json.loads(mpath.read_text())
    cfg = build_tiny_model().cfg
    assert man["sha256"] == sha256_file(path)
    assert [i["name"] for i in man["inputs"]] == list(INPUT_NAMES)
    assert [o["name"] for o in man["outputs"]] == list(OUTPUT_NAMES)
    assert man["inputs"][0]["shape"] == list(cfg.input_shapes(1)["raster"])
    assert (man["num_modes"], man["future_steps"], man["n_max"]) == (
        cfg.num_modes,
        cfg.future_steps,
        cfg.n_max,
    )
    assert man["dt_s"] == cfg.dt_s and man["opset"] >= 17
    assert man["raster_spec_version"] == cfg.raster_spec_version
    assert man["num_channels"] == cfg.in_channels
    assert not list(tmp_path.glob("*.data"))  # one self-contained file


def test_export_dynamic_batch_runs_two_scenes(tmp_path):
    """A dynamic-batch export scores two scenes (e.g. two candidate plans) in one call."""
    model = build_tiny_model()
    path = tmp_path / "dyn.onnx"
    man = export_onnx(model, path, dynamic_batch=True)
    assert man["inputs"][0]["shape"][0] == "B"
    feed = random_inputs(model.cfg, 2, seed=5)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(list(OUTPUT_NAMES), feed)
    with torch.no_grad():
        ref = model(*(torch.from_numpy(feed[n]) for n in INPUT_NAMES))
    for r, g in zip(ref, got):
        assert np.max(np.abs(r.numpy() - g)) <= 1e-4


def test_export_dynamic_agents_same_outputs_on_valid_agents_only(tmp_path):
    """A symbolic agent axis: fed only the valid agents, their outputs equal the padded run's."""
    model = build_tiny_model()
    path, _ = write_tiny_onnx(tmp_path, dynamic_agents=True)
    man = json.loads(manifest_path_for(path).read_text())
    shapes = {t["name"]: t["shape"] for t in man["inputs"] + man["outputs"]}
    assert (
        shapes["agent_hist"][1] == shapes["traj"][1] == "N" and shapes["raster"][1] == model.cfg.in_channels
    )
    assert onnx_parity(model, path, seeds=(0, 1), n_valid=3) <= 1e-4  # padded and 3 agents only
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = random_inputs(model.cfg, 1, seed=4, n_valid=2)
    short = {k: v[:, :2] if k.startswith("agent_") else v for k, v in feed.items()}
    full, part = sess.run(list(OUTPUT_NAMES), feed), sess.run(list(OUTPUT_NAMES), short)
    for f, p in zip(full, part):
        assert p.shape[1] == 2 and np.max(np.abs(f[:, :2] - p)) <= 1e-5


def test_checkpoint_round_trip_same_outputs(tmp_path):
    """save_checkpoint / load_checkpoint restore the same weights and config."""
    model = build_tiny_model(seed=3)
    save_checkpoint(tmp_path / "m.pt", model, {"epoch": 2})
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta == {"epoch": 2}
    feed = {k: torch.from_numpy(v) for k, v in random_inputs(model.cfg, 1, seed=1).items()}
    with torch.no_grad():
        a = model(*(feed[n] for n in INPUT_NAMES))
        b = loaded(*(feed[n] for n in INPUT_NAMES))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
