"""Argoverse 2 motion-forecasting scenario (parquet or CSV + map JSON) -> prescient log.

Input: a scenario directory with ``scenario_<id>.parquet`` (or ``.csv``) and
``log_map_archive_<id>.json``. Time: ``stamp_ns = start_timestamp + timestep * 100 ms``. Positions,
headings and velocities are given in the city frame (our world frame) and used as they are.

Output (``log_time = stamp``): ``VectorMap`` once, then per timestep ``EgoState`` (from the track
``AV``), ``Tracks`` and ``GroundTruth`` of every other track present at that step. Track ids are the
numeric AV2 ids. A ``prescient.av2_motion`` metadata record keeps scenario id, city, focal track
and each track's ``object_category`` (0 fragment, 1 unscored, 2 scored, 3 focal) for evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import numpy as np

from prescient.bus import messages as m
from prescient.bus.importers import (
    INT64_MAX,
    MAX_ABS_VALUE,
    InputError,
    finite_column,
    import_writer,
    integer_column,
    read_table,
    string_column,
)
from prescient.bus.importers._tracks import AgentRows, default_sizes, ego_state, iter_agent_messages
from prescient.bus.importers.av2_map import find_map, load_av2_map
from prescient.bus.importers.av2_sensor import EGO_SIZE_LWH_M
from prescient.bus.logfile import refuse_existing

A = m.AgentClass
OBJECT_TYPE_CLASS: Final = {
    "vehicle": A.CAR,
    "bus": A.BUS,
    "pedestrian": A.PEDESTRIAN,
    "cyclist": A.CYCLIST,
    "motorcyclist": A.CYCLIST,
    "riderless_bicycle": A.UNKNOWN,
    "static": A.UNKNOWN,
    "background": A.UNKNOWN,
    "construction": A.UNKNOWN,
    "unknown": A.UNKNOWN,
}
COLUMNS: Final = (
    "track_id",
    "object_type",
    "object_category",
    "timestep",
    "position_x",
    "position_y",
    "heading",
    "velocity_x",
    "velocity_y",
    "start_timestamp",
)
STEP_NS: Final = 100_000_000
MAX_TIMESTEP: Final = 10**9  # 3 years at 10 Hz; scenarios have 110 steps
EGO_TRACK_ID: Final = "AV"
METADATA_NAME: Final = "prescient.av2_motion"


def _scenario_file(src: Path) -> Path:
    if src.is_file():
        return src
    if not src.is_dir():
        raise InputError(src, "not found")
    for pattern in ("scenario_*.parquet", "scenario_*.csv"):
        found = sorted(src.glob(pattern))
        if found:
            return found[0]
    raise InputError(src, "no scenario_*.parquet or scenario_*.csv in the directory")


def import_av2_motion(src: str | Path, out: str | Path, *, overwrite: bool = False) -> dict[str, int]:
    """Convert one AV2 motion-forecasting scenario to a prescient log.

    Args:
        src: the scenario directory (or its parquet/CSV file; the map must sit next to it).
        out: output log.
        overwrite: replace ``out`` if it holds data.

    Returns:
        messages written per topic.

    Raises:
        InputError: missing column, NaN, unknown object_type, duplicate or non-monotonic
            timesteps of a track, no ``AV`` track.
        LogExistsError: ``out`` holds data and ``overwrite`` is False (checked before reading).
    """
    refuse_existing(out, overwrite=overwrite)
    path = _scenario_file(Path(src))
    df = read_table(path, COLUMNS)
    if len(df) == 0:
        raise InputError(path, "no rows")
    step_i = integer_column(path, df, "timestep", 0, MAX_TIMESTEP)
    start = integer_column(path, df, "start_timestamp", 0, INT64_MAX - MAX_TIMESTEP * STEP_NS)
    if len(np.unique(start)) != 1:
        raise InputError(path, "start_timestamp differs between rows", column="start_timestamp")
    t_ns = int(start[0]) + step_i * STEP_NS
    xy = np.stack(
        [finite_column(path, df, c, max_abs=MAX_ABS_VALUE) for c in ("position_x", "position_y")], axis=1
    )
    heading = finite_column(path, df, "heading", max_abs=MAX_ABS_VALUE)
    vel = np.stack(
        [finite_column(path, df, c, max_abs=MAX_ABS_VALUE) for c in ("velocity_x", "velocity_y")], axis=1
    )
    track = string_column(path, df, "track_id")
    types = string_column(path, df, "object_type")
    unknown = [i for i, ty in enumerate(types) if ty not in OBJECT_TYPE_CLASS]
    if unknown:
        raise InputError(
            path, f"unknown object_type {types[unknown[0]]!r}", column="object_type", row=unknown[0]
        )

    # Per track: timesteps strictly increasing in file order (the AV2 layout), no duplicates.
    for tid in np.unique(track):
        idx = np.flatnonzero(track == tid)
        d = np.diff(step_i[idx])
        if (d <= 0).any():
            r = int(idx[np.flatnonzero(d <= 0)[0] + 1])
            raise InputError(
                path,
                f"non-monotonic time: track {tid} timestep {step_i[r]} after "
                f"{step_i[idx[np.flatnonzero(d <= 0)[0]]]}",
                column="timestep",
                row=r,
            )

    is_ego = track == EGO_TRACK_ID
    if not is_ego.any():
        raise InputError(path, f"no ego track {EGO_TRACK_ID!r}", column="track_id")
    agents = ~is_ego
    try:
        ids = np.array([int(t) for t in track[agents]], np.int64)
    except (ValueError, OverflowError) as e:
        raise InputError(path, f"track_id not an int64: {e}", column="track_id") from e
    cls = np.array([int(OBJECT_TYPE_CLASS[ty]) for ty in types[agents]], np.int32)
    rows = AgentRows(
        t_ns=t_ns[agents],
        agent_id=ids,
        class_id=cls,
        xy_m=xy[agents],
        size_lwh_m=default_sizes(cls),
        yaw_rad=heading[agents],
        velocity_mps=vel[agents],
    )
    e_idx = np.flatnonzero(is_ego)
    e_t = t_ns[e_idx]
    ego_pose = {int(t): np.array([xy[i, 0], xy[i, 1], heading[i]]) for t, i in zip(e_t, e_idx)}
    speed = np.hypot(vel[e_idx, 0], vel[e_idx, 1])
    dt_s = np.maximum(np.diff(e_t) / 1e9, 1e-9)
    accel = np.r_[0.0, np.diff(speed) / dt_s]
    yaw_rate = np.r_[0.0, np.diff(np.unwrap(heading[e_idx])) / dt_s]

    stamps = np.unique(t_ns)
    missing = [int(s) for s in stamps if int(s) not in ego_pose]
    if missing:
        raise InputError(
            path,
            f"ego track {EGO_TRACK_ID!r} has no row at {len(missing)} timesteps (first at {missing[0]} ns)",
            column="timestep",
        )
    per_stamp = {s: (tr, gt) for s, tr, gt in iter_agent_messages(rows, ego_pose, max_gap_s=0.15)}
    cat = {}
    if "object_category" in df.columns:
        categories = integer_column(path, df, "object_category", 0, 3)
        for tid, c in zip(track[agents], categories[agents]):
            cat[tid] = int(c)
    meta = {
        "scenario_id": str(df["scenario_id"].iloc[0]) if "scenario_id" in df.columns else "",
        "city": str(df["city"].iloc[0]) if "city" in df.columns else "",
        "focal_track_id": str(df["focal_track_id"].iloc[0]) if "focal_track_id" in df.columns else "",
        "object_category": json.dumps(cat, sort_keys=True),
        "observed_steps": str(int(df["observed"].astype(bool).groupby(step_i).any().sum()))
        if "observed" in df.columns
        else "",
    }
    vmap = load_av2_map(find_map(path.parent), stamp_ns=int(stamps[0]))
    ego_pos = {int(t): k for k, t in enumerate(e_t)}
    with import_writer(out, path, overwrite=overwrite) as w:
        w.add_metadata(METADATA_NAME, meta)
        w.write(vmap)
        for s in stamps.tolist():
            k = ego_pos[s]
            i = e_idx[k]
            w.write(ego_state(s, ego_pose[s], vel[i], accel[k], yaw_rate[k], EGO_SIZE_LWH_M))
            if s in per_stamp:
                w.write(per_stamp[s][0])
                w.write(per_stamp[s][1])
            else:
                w.write(m.empty(m.Tracks, m.TOPIC_TRACKS, s, ego_pose=ego_pose[s]))
                w.write(m.empty(m.GroundTruth, m.TOPIC_GROUND_TRUTH, s))
        return dict(w.counts)
