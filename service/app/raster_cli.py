"""``prescient raster``: render one frame of a log, a simulator run or a demo scene to a PNG.

Sources (exactly one):

* ``--log LOG --t T``: replay a recorded/imported log offline (``prescient.bus.replayer.iter_messages``) up to
  ``T`` seconds after the log's first message, and render the first ``Tracks`` at or after it
  (the newest ``VectorMap``, ``EgoState``, ``TrafficLights`` and LiDAR frames before it are used).
  A log without ``Tracks`` falls back to its ``GroundTruth`` (perfect perception, see below).
* ``--sim SCENARIO --seed N --t T``: run the simulator offline (``prescient.sim_sensors.Simulation``) for
  ``T`` seconds. No tracker runs here: the picture uses the simulator's **GroundTruth converted to
  Tracks** (:class:`prescient.service.raster.scenes.TrackHistory`: true boxes, confidence 1), plus its
  traffic lights, LiDAR frames and the ego plan.
* ``--demo --seed N``: a seeded random scene on a synthetic grid map (no data needed).

``--out`` may be an existing folder: the picture is then written into it under a name made from
the source (``LOG_t5.png``, ``intersection_seed0_t10.png``, ``demo_seed0.png``). The path printed is
always the file written (a name without a suffix gets ``.png``, as matplotlib writes it).
"""

from __future__ import annotations

import argparse
import logging
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from prescient.bus import messages as m
from prescient.bus.cli import non_negative_float, non_negative_int, output_path, positive_float, require_file
from prescient.bus.errors import StartupError
from prescient.service.raster.config import RasterConfig
from prescient.service.raster.rasterizer import Rasterizer
from prescient.service.raster.rgb import save_png
from prescient.service.raster.scenes import TrackHistory, grid_map, random_scene

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add ``prescient raster``."""
    p = subparsers.add_parser(
        "raster",
        help="render one BEV raster frame to a PNG with a legend",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--log", type=Path, help="recorded or imported log (MCAP)")
    src.add_argument("--sim", metavar="SCENARIO", help="simulator scenario, run offline")
    src.add_argument("--demo", action="store_true", help="seeded random scene on a synthetic grid map")
    p.add_argument(
        "--t", type=non_negative_float, default=0.0, help="seconds after the start of the log / simulation"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="simulator / demo seed")
    p.add_argument(
        "--out", type=_picture_path, default=Path("scene.png"), help="output PNG, or a folder to write it in"
    )
    p.add_argument("--npy", type=output_path, default=None, help="also save the raw (C, H, W) raster as .npy")
    p.add_argument("--extent-m", type=positive_float, default=64.0, help="half extent along ego x, metres")
    p.add_argument("--resolution-m", type=positive_float, default=0.5, help="metres per pixel")
    p.set_defaults(func=run)


def _picture_path(text: str) -> Path:
    """``--out``: an existing folder (the name is chosen later), or a file :func:`output_path` accepts."""
    path = Path(text)
    if path.is_dir():
        return path
    if path.suffix and path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{path}: expected a .png file or a folder")
    return output_path(text)


def picture_file(out: Path, args: argparse.Namespace) -> Path:
    """The file ``--out`` names: in a folder, a name from the source; a bare name gets ``.png``."""
    if out.is_dir():
        if args.log is not None:
            name = f"{args.log.stem}_t{args.t:g}"
        elif args.sim is not None:
            name = f"{args.sim}_seed{args.seed}_t{args.t:g}"
        else:
            name = f"demo_seed{args.seed}"
        return out / f"{name}.png"
    return out if out.suffix else out.with_name(out.name + ".png")


def run(args: argparse.Namespace) -> int:
    """Handler of ``prescient raster``; returns the exit code."""
    out_png = picture_file(args.out, args)
    npy = (
        args.npy
        if args.npy is None or args.npy.suffix == ".npy"
        else args.npy.with_name(args.npy.name + ".npy")
    )
    if out_png.is_dir() or (npy is not None and npy.is_dir()):
        raise StartupError(f"{out_png if out_png.is_dir() else npy} is a folder; give a file name")
    try:
        cfg = RasterConfig(extent_m=args.extent_m, resolution_m=args.resolution_m)
    except ValueError as e:
        raise StartupError(f"bad raster config: {e}") from e
    if args.log is not None:
        frame, title = frame_from_log(args.log, args.t)
    elif args.sim is not None:
        frame, title = frame_from_sim(args.sim, args.seed, args.t)
    else:
        vmap = grid_map()
        frame = {"vector_map": vmap, **random_scene(np.random.default_rng(args.seed), 120, vector_map=vmap)}
        title = f"demo seed {args.seed}"
    r = Rasterizer(cfg, frame.pop("vector_map"))
    raster = r.render(**frame)
    n_agents = 0 if frame["tracks"] is None else len(frame["tracks"].track_id)
    title = f"{title} | {n_agents} agents | {r.spec.fingerprint()}"
    out = save_png(raster, out_png, r.channels, cfg.resolution_m, title)
    if npy is not None:
        npy.parent.mkdir(parents=True, exist_ok=True)
        np.save(npy, raster)
    print(
        f"wrote {out} ({r.num_channels} x {cfg.height_px} x {cfg.width_px}, {n_agents} agents)"
        + (f" and {npy}" if npy is not None else "")
    )
    return 0


def _ego_pose(ego: m.EgoState | None, tracks: m.Tracks | None) -> np.ndarray:
    if ego is not None:
        return np.asarray(ego.pose, np.float64)
    if tracks is not None:
        return np.asarray(tracks.ego_pose, np.float64)
    raise StartupError("no EgoState or Tracks to take the ego pose from")


def frame_from_log(path: Path, t_s: float) -> tuple[dict[str, Any], str]:
    """Inputs of ``Rasterizer`` + ``render`` for the first tracks at or after ``t_s`` into a log."""
    try:
        from prescient.bus.replayer import iter_messages
    except ImportError as e:  # pragma: no cover - part of the product missing
        raise StartupError(f"prescient.bus.replayer is not available: {e}") from e
    require_file(path, "log")
    latest: dict[type, Any] = {}
    lidar: dict[str, m.LidarFrame] = {}
    ego_hist: deque[np.ndarray] = deque(maxlen=m.TRACK_HISTORY_STEPS)
    gt_history = TrackHistory()
    t0: int | None = None
    has_tracks = False
    try:
        for item in iter_messages(path):
            msg = item.msg
            stamp = msg.header.stamp_ns
            if t0 is None:
                t0 = stamp
            if isinstance(msg, m.LidarFrame):
                lidar[msg.header.topic] = msg
                continue
            if isinstance(msg, m.EgoState):
                ego_hist.append(np.asarray(msg.pose[:2], np.float64))
            latest[type(msg)] = msg
            due = stamp >= t0 + int(round(t_s * 1e9))
            if isinstance(msg, m.Tracks):
                has_tracks = True
                if due:
                    return _frame(latest, msg, lidar, ego_hist), f"{path.name} t={t_s:g}s (tracks)"
            elif isinstance(msg, m.GroundTruth) and not has_tracks:
                ego = latest.get(m.EgoState)
                tracks = gt_history.update(msg, _ego_pose(ego, None)) if ego is not None else None
                if due and tracks is not None:
                    return _frame(
                        latest, tracks, lidar, ego_hist
                    ), f"{path.name} t={t_s:g}s (ground truth as tracks)"
    except (OSError, ValueError) as e:
        raise StartupError(f"cannot read log {path}: {e}") from e
    raise StartupError(f"log {path} has no Tracks or GroundTruth at or after t={t_s:g}s")


def _frame(
    latest: dict[type, Any], tracks: m.Tracks, lidar: dict[str, m.LidarFrame], ego_hist: deque
) -> dict[str, Any]:
    ego = latest.get(m.EgoState)
    plan = None if ego is None or len(ego.plan_xy_m) == 0 else np.asarray(ego.plan_xy_m, np.float64)
    return {
        "vector_map": latest.get(m.VectorMap),
        "tracks": tracks,
        "ego_pose": _ego_pose(ego, tracks),
        "lights": latest.get(m.TrafficLights),
        "plan_xy_m": plan,
        "lidar": list(lidar.values()) or None,
        "ego_history_xy_m": np.array(ego_hist) if len(ego_hist) >= 2 else None,
    }


def frame_from_sim(scenario: str, seed: int, t_s: float) -> tuple[dict[str, Any], str]:
    """Run the simulator offline for ``t_s`` seconds; ground truth stands in for tracks."""
    try:
        from prescient.sim_sensors import SimConfig, Simulation, build_map
    except ImportError as e:
        raise StartupError(
            f"the simulator (prescient.sim_sensors.Simulation) is not available in this checkout: {e}"
        ) from e
    try:
        sim = Simulation(SimConfig(scenario=scenario, seed=seed))
    except (TypeError, ValueError, KeyError) as e:
        raise StartupError(f"cannot start simulation {scenario!r} seed {seed}: {e}") from e
    vmap = getattr(sim, "vector_map", None) or build_map(scenario, seed=seed)
    latest: dict[type, Any] = {m.VectorMap: vmap}
    lidar: dict[str, m.LidarFrame] = {}
    ego_hist: deque[np.ndarray] = deque(maxlen=m.TRACK_HISTORY_STEPS)
    history = TrackHistory()
    t0: int | None = None
    tracks = None
    for _ in range(int(t_s / m.PRED_DT_S) * 100 + 1000):  # bounded: sensors may step faster than 10 Hz
        for msg in sim.step():
            if t0 is None:
                t0 = msg.header.stamp_ns
            if isinstance(msg, m.LidarFrame):
                lidar[msg.header.topic] = msg
            elif isinstance(msg, m.EgoState):
                ego_hist.append(np.asarray(msg.pose[:2], np.float64))
                latest[m.EgoState] = msg
            elif isinstance(msg, m.TrafficLights | m.VectorMap):
                latest[type(msg)] = msg
            elif isinstance(msg, m.GroundTruth) and m.EgoState in latest:
                tracks = history.update(msg, latest[m.EgoState].pose)
                if msg.header.stamp_ns >= t0 + int(round(t_s * 1e9)):
                    return _frame(
                        latest, tracks, lidar, ego_hist
                    ), f"sim {scenario} seed {seed} t={t_s:g}s (ground truth as tracks)"
    raise StartupError(f"simulation {scenario!r} produced no GroundTruth by t={t_s:g}s")
