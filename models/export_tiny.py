"""A tiny random-weight model exported on the fly for tests (no downloads, a few seconds).

``python -m prescient.models.export_tiny OUT_DIR`` writes ``tiny.onnx`` and ``tiny.manifest.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from prescient.models.export import export_onnx, manifest_path_for
from prescient.models.net import TrajectoryNet
from prescient.service.model_io.config import ModelConfig

TINY_SPEC_VERSION = "tiny-test"


def tiny_config(**overrides: object) -> ModelConfig:
    """A small :class:`ModelConfig` (4 channels, 32x32 raster, 8 agents, K=3, T=12)."""
    kw: dict = dict(
        in_channels=4,
        raster_hw=(32, 32),
        resolution_m_per_px=2.0,
        n_max=8,
        hist_steps=6,
        future_steps=12,
        num_modes=3,
        plan_points=4,
        stem_channels=8,
        stage_channels=(8, 16, 16),
        d_model=32,
        num_heads=2,
        num_layers=1,
        raster_spec_version=TINY_SPEC_VERSION,
    )
    kw.update(overrides)
    return ModelConfig(**kw)


def build_tiny_model(seed: int = 0, **overrides: object) -> TrajectoryNet:
    """Seeded random-weight :class:`TrajectoryNet` with :func:`tiny_config` (eval mode)."""
    torch.manual_seed(seed)
    return TrajectoryNet(tiny_config(**overrides)).eval()


def write_tiny_onnx(
    out_dir: str | Path, seed: int = 0, dynamic_agents: bool = False, **overrides: object
) -> tuple[Path, Path]:
    """Export a tiny model to ``out_dir/tiny.onnx``; returns (onnx path, manifest path).

    ``dynamic_agents``: a symbolic agent axis (as ``export-sim`` writes), see :func:`export_onnx`.
    """
    model = build_tiny_model(seed, **overrides)
    path = Path(out_dir) / "tiny.onnx"
    meta = {"note": "random weights, tests only", "seed": seed}
    export_onnx(model, path, training_meta=meta, dynamic_agents=dynamic_agents)
    return path, manifest_path_for(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    onnx_path, manifest = write_tiny_onnx(args.out_dir)
    print(f"wrote {onnx_path} and {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
