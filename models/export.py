"""ONNX export of :class:`prescient.models.net.TrajectoryNet`, its manifest, checkpoints and a parity check.

The exported graph has a fixed agent count ``N_MAX`` and batch size 1 by default (stable shapes
for GPU providers); pass ``dynamic_batch=True`` to export a symbolic batch axis (used to score
several candidate ego plans in one call). One self-contained ``.onnx`` file is written (legacy
TorchScript exporter, ``dynamo=False``: no external-weights side files), plus
``<name>.manifest.json`` next to it, which :class:`prescient.service.predictor.OnnxPredictor` checks on load.
"""

from __future__ import annotations

import json
import logging
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prescient.models.net import TrajectoryNet
from prescient.service.model_io.config import (
    AGENT_AXIS,
    AGENT_AXIS_NAMES,
    INPUT_NAMES,
    OUTPUT_NAMES,
    ModelConfig,
)
from prescient.service.model_io.manifest import MANIFEST_FORMAT_VERSION, manifest_path_for, sha256_file
from prescient.service.model_io.sample_inputs import random_inputs  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17


def _manifest_shape(
    shape: tuple[int, ...], batch: int | str, name: str, dynamic_agents: bool
) -> list[int | str]:
    """A tensor's manifest shape: the batch axis, then the agent axis symbolic when exported so."""
    out: list[int | str] = [batch, *shape[1:]]
    if dynamic_agents and name in AGENT_AXIS_NAMES:
        out[1] = AGENT_AXIS
    return out


def export_onnx(
    model: TrajectoryNet,
    onnx_path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    dynamic_agents: bool = False,
    training_meta: dict[str, Any] | None = None,
    model_id: str | None = None,
) -> dict[str, Any]:
    """Export ``model`` (eval mode) to one ONNX file and write its manifest next to it.

    Args:
        model: the net; its ``cfg`` fixes every shape.
        onnx_path: destination ``.onnx``.
        opset: ONNX opset (>= 17).
        dynamic_batch: export the batch axis as symbolic ``B`` instead of 1.
        dynamic_agents: export the agent axis of ``agent_*`` inputs and of every output as
            symbolic ``N`` (at most ``cfg.n_max`` per pass): the predictor then feeds only the
            agents it has. Padded agents are masked keys, so a valid agent's outputs do not
            depend on the padding; the pairwise interaction cost falls with N^2.
        training_meta: free-form training metadata stored in the manifest (seed, data, metrics).
        model_id: identifier stored in the manifest; default ``<file stem>-<sha256[:12]>``.

    Returns:
        The manifest dict (also written to :func:`manifest_path_for`).
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    cfg = model.cfg
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = {k: torch.from_numpy(v) for k, v in random_inputs(cfg, 1).items()}
    dyn: dict[str, dict[int, str]] = {}
    for name in (*INPUT_NAMES, *OUTPUT_NAMES):
        axes = {0: "B"} if dynamic_batch else {}
        if dynamic_agents and name in AGENT_AXIS_NAMES:
            axes[1] = AGENT_AXIS
        if axes:
            dyn[name] = axes
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # legacy exporter: self-contained file
        torch.onnx.export(
            model,
            tuple(example[n] for n in INPUT_NAMES),
            str(onnx_path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamic_axes=dyn or None,
            do_constant_folding=True,
            dynamo=False,
        )
    log.info("exported %s in %.1f s", onnx_path, time.perf_counter() - t0)
    digest = sha256_file(onnx_path)
    batch: int | str = "B" if dynamic_batch else 1
    in_shapes = cfg.input_shapes(1)
    out_shapes = cfg.output_shapes(1)
    manifest = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "model_id": model_id or f"{onnx_path.stem}-{digest[:12]}",
        "file": onnx_path.name,
        "sha256": digest,
        "size_bytes": onnx_path.stat().st_size,
        "opset": opset,
        "inputs": [
            {"name": n, "shape": _manifest_shape(in_shapes[n], batch, n, dynamic_agents), "dtype": "float32"}
            for n in INPUT_NAMES
        ],
        "outputs": [
            {"name": n, "shape": _manifest_shape(out_shapes[n], batch, n, dynamic_agents), "dtype": "float32"}
            for n in OUTPUT_NAMES
        ],
        "num_modes": cfg.num_modes,
        "future_steps": cfg.future_steps,
        "dt_s": cfg.dt_s,
        "n_max": cfg.n_max,
        "hist_steps": cfg.hist_steps,
        "raster_spec_version": cfg.raster_spec_version,
        "num_channels": cfg.in_channels,
        "channel_names": list(cfg.channel_names),
        "output_frame": "agent",  # traj/scale relative to each agent's current pose
        "model_config": cfg.to_dict(),
        "training": training_meta or {},
        "exported_with": {"torch": torch.__version__, "python": platform.python_version()},
    }
    manifest_path_for(onnx_path).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def onnx_parity(
    model: TrajectoryNet,
    onnx_path: str | Path,
    *,
    seeds: tuple[int, ...] = (0, 1),
    n_valid: int | None = None,
) -> float:
    """Max abs difference between PyTorch (eval) and onnxruntime outputs on seeded random inputs.

    With a symbolic agent axis and ``n_valid``, the file is also run on only the valid agents.

    Returns:
        The largest absolute difference over all outputs and seeds.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    dynamic_agents = not isinstance(sess.get_inputs()[INPUT_NAMES.index("agent_valid")].shape[1], int)
    model = model.eval()
    worst = 0.0
    for seed in seeds:
        feed = random_inputs(model.cfg, 1, seed=seed, n_valid=n_valid)
        with torch.no_grad():
            ref = model(*(torch.from_numpy(feed[n]) for n in INPUT_NAMES))
        got = sess.run(list(OUTPUT_NAMES), feed)
        for r, g in zip(ref, got):
            worst = max(worst, float(np.max(np.abs(r.numpy() - g))))
        if dynamic_agents and n_valid:
            # Fed only the valid agents (what the predictor does), the valid rows must not change.
            short = {k: v[:, :n_valid] if k in AGENT_AXIS_NAMES else v for k, v in feed.items()}
            got = sess.run(list(OUTPUT_NAMES), short)
            for r, g in zip(ref, got):
                worst = max(worst, float(np.max(np.abs(r.numpy()[:, :n_valid] - g))))
    return worst


def save_checkpoint(path: str | Path, model: TrajectoryNet, meta: dict[str, Any] | None = None) -> None:
    """Write ``path`` (state_dict tensors only) and ``path.json`` (config + metadata).

    Loading uses ``torch.load(weights_only=True)``: no arbitrary unpickling.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    Path(str(path) + ".json").write_text(
        json.dumps({"model_config": model.cfg.to_dict(), "meta": meta or {}}, indent=2, sort_keys=True)
    )


def load_checkpoint(path: str | Path) -> tuple[TrajectoryNet, dict[str, Any]]:
    """Inverse of :func:`save_checkpoint`; returns (model in eval mode, meta)."""
    path = Path(path)
    side = json.loads(Path(str(path) + ".json").read_text())
    model = TrajectoryNet(ModelConfig.from_dict(side["model_config"]))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), side.get("meta", {})
