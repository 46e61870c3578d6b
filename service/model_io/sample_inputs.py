"""Seeded random net inputs with plausible ranges (numpy only): exports, tests and benchmarks."""

from __future__ import annotations

import numpy as np

from prescient.service.model_io.config import ModelConfig


def random_inputs(
    cfg: ModelConfig, batch: int = 1, seed: int = 0, n_valid: int | None = None
) -> dict[str, np.ndarray]:
    """Seeded random net inputs (float32) with plausible ranges, keyed by input name.

    Agent positions fall inside the raster so ``grid_sample`` sees real features.
    """
    rng = np.random.default_rng(seed)
    shapes = cfg.input_shapes(batch)
    half_extent_m = 0.4 * min(cfg.raster_hw) * cfg.resolution_m_per_px
    out = {
        "raster": rng.random(shapes["raster"], dtype=np.float32),
        "agent_hist": rng.normal(0, 2, shapes["agent_hist"]).astype(np.float32),
        "agent_state": rng.normal(0, 1, shapes["agent_state"]).astype(np.float32),
        "agent_valid": np.zeros(shapes["agent_valid"], np.float32),
        "ego_state": rng.normal(0, 1, shapes["ego_state"]).astype(np.float32),
        "ego_plan": rng.normal(0, 10, shapes["ego_plan"]).astype(np.float32),
    }
    out["agent_state"][..., 0:2] = rng.uniform(
        -half_extent_m, half_extent_m, shapes["agent_state"][:2] + (2,)
    )
    yaw = rng.uniform(-np.pi, np.pi, shapes["agent_state"][:2])
    out["agent_state"][..., 2] = np.cos(yaw)
    out["agent_state"][..., 3] = np.sin(yaw)
    k = cfg.n_max if n_valid is None else n_valid
    out["agent_valid"][:, :k] = 1.0
    return out
