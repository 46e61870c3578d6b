"""Tiny logs and a tiny model for the fleet tests (a few seconds to build, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from prescient.bus import messages as m
from prescient.bus.logfile import LogWriter
from prescient.service.app.fleet.simlogs import write_sim_log  # noqa: F401 - re-exported for the tests
from prescient.service.raster.scenes import grid_map, make_tracks

MS = 1_000_000


def write_tracks_log(path: Path, seconds: float = 3.0) -> Path:
    """An imported-style log (map, ego, ground truth as Tracks of three cars moving along x)."""
    start = np.array([[70.0, 80.0], [90.0, 84.0], [80.0, 76.0]])
    vel = np.array([[5.0, 0.0], [-3.0, 0.0], [2.0, 1.0]])
    with LogWriter(path) as w:
        w.write(grid_map())
        for i in range(int(seconds * 10)):
            t_ns = 1_000_000_000 + i * 100 * MS
            t = i * 0.1
            w.write(m.empty(
                m.EgoState, m.TOPIC_EGO, stamp_ns=t_ns, pose=np.array([80.0, 80.0, 0.0]),
                velocity_mps=np.array([0.0, 0.0], np.float32), size_lwh_m=np.array([4.8, 2.0, 1.6], np.float32),
            ))  # fmt: skip
            w.write(make_tracks(
                start + vel * t, np.arctan2(vel[:, 1], vel[:, 0]), np.tile([4.5, 1.9], (3, 1)),
                np.full(3, int(m.AgentClass.CAR)), vel, ego_pose=(80.0, 80.0, 0.0), stamp_ns=t_ns,
            ))  # fmt: skip
    return path


def write_tiny_service_model(out_dir: Path) -> Path:
    """A random-weight model that matches the service's raster spec (what ``replay`` accepts)."""
    from prescient.models.export_tiny import write_tiny_onnx
    from prescient.service.raster import RasterConfig, build_spec

    spec = build_spec(RasterConfig())
    path, _ = write_tiny_onnx(
        out_dir,
        in_channels=spec.num_channels,
        raster_hw=(spec.height_px, spec.width_px),
        resolution_m_per_px=RasterConfig().resolution_m,
        future_steps=m.PRED_HORIZON_STEPS,
        raster_spec_version=spec.fingerprint(),
    )
    return path


def ray_processes_of(pid: int) -> list[int]:
    """Live processes of the local Ray instance a driver with ``pid`` started (its session folder
    ends in ``_<pid>``); empty once ``ray.shutdown`` has run."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "session_" in cmd and f"_{pid}/" in cmd and int(d.name) != os.getpid():
            found.append(int(d.name))
    return found
