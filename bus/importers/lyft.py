"""Lyft Level 5 prediction data set (l5kit zarr v2) -> prescient log.

Input: an l5kit ``.zarr`` directory (group with the structured arrays ``scenes``, ``frames``,
``agents``; read with the ``zarr<3`` and ``numcodecs`` packages of the ``data`` extra). One scene
is imported (``scene``, default 0): its frames (10 Hz) give the stamps (``frames.timestamp``,
capture time in ns) and the ego (``ego_translation``, ``ego_rotation``); its agents
(``agent_index_interval`` slices of ``agents``) give the tracks. Positions, headings and
velocities are in the data set's metric world frame (our world frame) and used as they are.

The agents are the Lyft AV's **perception output**, not hand labels: short, flickering tracks,
many UNKNOWN. They are written as ``Tracks`` (``class_probs`` from the real 17-class
probabilities, aggregated by :data:`LABEL_CLASS`; ``class_id`` their argmax) and, as the other
importers do, as ``GroundTruth`` (the best reference the data set has). The scene has no map:
the log carries an empty ``VectorMap`` (``map_id`` :data:`NO_MAP_ID`) so the bus replayer and
``prescient replay`` can run on it. A ``prescient.lyft`` metadata record keeps source, scene
index and host.

Output per frame (``log_time = stamp``): ``EgoState`` (velocity: backward difference of the ego
positions, zero at the first frame), ``Tracks`` and ``GroundTruth``. Track ids are l5kit's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Final

import numpy as np

from prescient.bus import messages as m
from prescient.bus.errors import MissingExtraError
from prescient.bus.importers import MAX_ABS_VALUE, InputError, import_writer
from prescient.bus.importers._tracks import AgentRows, ego_state, iter_agent_messages
from prescient.bus.logfile import refuse_existing

A = m.AgentClass
# l5kit label -> our class, in l5kit's label order (the zarr's ``labels`` attribute, l5kit's
# PERCEPTION_LABELS), mapped as the AV2 importers map the same kinds of object.
LABEL_CLASS: Final[dict[str, m.AgentClass]] = {
    "PERCEPTION_LABEL_NOT_SET": A.UNKNOWN,
    "PERCEPTION_LABEL_UNKNOWN": A.UNKNOWN,
    "PERCEPTION_LABEL_DONTCARE": A.UNKNOWN,
    "PERCEPTION_LABEL_CAR": A.CAR,
    "PERCEPTION_LABEL_VAN": A.CAR,
    "PERCEPTION_LABEL_TRAM": A.BUS,  # AV2: RAILED_VEHICLE -> BUS
    "PERCEPTION_LABEL_BUS": A.BUS,
    "PERCEPTION_LABEL_TRUCK": A.TRUCK,
    "PERCEPTION_LABEL_EMERGENCY_VEHICLE": A.CAR,  # police cars, ambulances: car-like motion
    "PERCEPTION_LABEL_OTHER_VEHICLE": A.TRUCK,  # Lyft's "other vehicle": trailers, large machines
    "PERCEPTION_LABEL_BICYCLE": A.CYCLIST,  # AV2: BICYCLE -> CYCLIST
    "PERCEPTION_LABEL_MOTORCYCLE": A.CYCLIST,
    "PERCEPTION_LABEL_CYCLIST": A.CYCLIST,
    "PERCEPTION_LABEL_MOTORCYCLIST": A.CYCLIST,
    "PERCEPTION_LABEL_PEDESTRIAN": A.PEDESTRIAN,
    "PERCEPTION_LABEL_ANIMAL": A.ANIMAL,
    "AVRESEARCH_LABEL_DONTCARE": A.UNKNOWN,
}
LABELS: Final = tuple(LABEL_CLASS)
# (17, C) one-hot: probabilities over l5kit labels @ this = probabilities over our classes.
LABEL_TO_CLASS_MATRIX: Final = np.eye(m.NUM_CLASSES, dtype=np.float64)[[int(LABEL_CLASS[n]) for n in LABELS]]
# l5kit's ego box (Ford Fusion, height with sensors), metres.
EGO_SIZE_LWH_M: Final = (4.87, 1.85, 1.8)
NO_MAP_ID: Final = "l5kit-no-map"  # an empty map: the scene has none
METADATA_NAME: Final = "prescient.lyft"
# Bounds on the work: an l5kit scene is 25 s (248 frames, ~100 agents per frame).
MAX_FRAMES: Final = 36_000  # one hour at 10 Hz
MAX_AGENTS_PER_FRAME: Final = 2_000
MAX_AGENT_ROWS: Final = 2_000_000
MAX_CHUNK_BYTES: Final = 256 * 2**20
MAX_TRACK_ID: Final = 2**62
PROB_SUM_TOL: Final = 1e-2

# field -> (numpy kinds allowed, per-row shape)
_Fields = dict[str, tuple[str, tuple[int, ...]]]
_SCENE_FIELDS: Final[_Fields] = {"frame_index_interval": ("iu", (2,))}
_FRAME_FIELDS: Final[_Fields] = {
    "timestamp": ("iu", ()),
    "agent_index_interval": ("iu", (2,)),
    "ego_translation": ("f", (3,)),
    "ego_rotation": ("f", (3, 3)),
}
_AGENT_FIELDS: Final[_Fields] = {
    "centroid": ("f", (2,)),
    "extent": ("f", (3,)),
    "yaw": ("f", ()),
    "velocity": ("f", (2,)),
    "track_id": ("iu", ()),
    "label_probabilities": ("f", (len(LABELS),)),
}


@dataclasses.dataclass(frozen=True)
class L5kitScene:
    """One l5kit scene as arrays: F frames, R agent rows sorted by (frame, track_id).

    Attributes:
        path: source zarr directory.
        host: the vehicle that logged the scene.
        timestamp_ns: (F,) int64 capture times, strictly increasing.
        ego_xyz_m: (F, 3) float64 ego position, world frame.
        ego_yaw_rad: (F,) float64 ego heading, world frame (from ``ego_rotation``).
        frame_start: (F + 1,) int64 offsets: the rows of frame i are ``frame_start[i]:frame_start[i+1]``.
        track_id: (R,) int64. centroid_m: (R, 2) float64, world frame.
        extent_lwh_m: (R, 3) float64. yaw_rad: (R,) float64. velocity_mps: (R, 2) float64, world.
        label_probs: (R, 17) float64 over :data:`LABELS`.
    """

    path: str
    host: str
    timestamp_ns: np.ndarray
    ego_xyz_m: np.ndarray
    ego_yaw_rad: np.ndarray
    frame_start: np.ndarray
    track_id: np.ndarray
    centroid_m: np.ndarray
    extent_lwh_m: np.ndarray
    yaw_rad: np.ndarray
    velocity_mps: np.ndarray
    label_probs: np.ndarray

    def class_probs(self) -> np.ndarray:
        """(R, C) float32 probabilities over :class:`~prescient.bus.messages.AgentClass`, rows sum to 1."""
        p = self.label_probs @ LABEL_TO_CLASS_MATRIX
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _open_group(src: Path) -> Any:
    try:
        import zarr  # data extra: only this importer needs zarr
    except ModuleNotFoundError as e:
        raise MissingExtraError("zarr", "data") from e
    if not src.is_dir():
        raise InputError(src, "expected an l5kit .zarr directory")
    try:
        return zarr.open_group(str(src), mode="r")
    except Exception as e:  # zarr raises many error types for unreadable metadata
        raise InputError(src, f"not a readable zarr v2 group: {type(e).__name__}: {e}") from e


def _array(src: Path, group: Any, name: str, fields: _Fields) -> Any:
    """The 1-D structured array ``name`` with the given fields; chunk size bounded."""
    try:
        arr = group[name]
        shape, chunks, dtype = tuple(arr.shape), tuple(arr.chunks), arr.dtype
    except Exception as e:  # KeyError, or zarr's errors on broken .zarray metadata
        raise InputError(src, f"missing or unreadable array {name!r}: {type(e).__name__}: {e}") from e
    if len(shape) != 1 or dtype.names is None:
        raise InputError(src, f"{name}: expected a 1-D structured array, got shape {shape} dtype {dtype}")
    if chunks[0] * dtype.itemsize > MAX_CHUNK_BYTES:
        raise InputError(src, f"{name}: chunk of {chunks[0]} rows exceeds {MAX_CHUNK_BYTES} bytes")
    for field, (kinds, row_shape) in fields.items():
        if field not in dtype.names:
            raise InputError(src, f"{name}: missing field; found {list(dtype.names)}", column=field)
        base, sub = dtype.fields[field][0].base, dtype.fields[field][0].shape
        if base.kind not in kinds or sub != row_shape:
            raise InputError(
                src, f"{name}: expected kind {kinds!r} shape {row_shape}, got {base} {sub}", column=field
            )
    return arr


def _read(src: Path, arr: Any, name: str, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` of ``arr``; a missing or undecodable chunk raises InputError.

    zarr fills a missing chunk with the fill value silently, so chunk files are checked first.
    """
    if not 0 <= lo <= hi <= arr.shape[0]:
        raise InputError(src, f"{name}: rows {lo}:{hi} outside the array (0:{arr.shape[0]})")
    step = arr.chunks[0]
    for c in range(lo // step, -(-hi // step)):
        key = f"{arr.path}/{c}" if arr.path else str(c)
        if key not in arr.store:
            raise InputError(src, f"{name}: chunk {c} (rows {c * step}:{(c + 1) * step}) is missing")
    try:
        return np.asarray(arr[lo:hi])
    except Exception as e:  # numcodecs/blosc raise several types on corrupt chunks
        raise InputError(src, f"{name}: cannot decode rows {lo}:{hi}: {type(e).__name__}: {e}") from e


def _finite(
    src: Path, name: str, field: str, a: np.ndarray, lo: float = -MAX_ABS_VALUE, row0: int = 0
) -> np.ndarray:
    """``a`` as float64 after checking every value is finite and within ``[lo, MAX_ABS_VALUE]``.

    ``row0``: the array row of ``a[0]`` (errors name array rows).
    """
    a = np.asarray(a, np.float64)
    flat = a.reshape(len(a), -1)
    out_of_range = (flat < lo) | (flat > MAX_ABS_VALUE)  # False for NaN: caught first
    for bad_values, what in (
        (~np.isfinite(flat), "NaN or inf"),
        (out_of_range, f"out of [{lo:g}, {MAX_ABS_VALUE:g}]"),
    ):
        bad = np.flatnonzero(bad_values.any(axis=1))
        if bad.size:
            raise InputError(src, f"{name}: {what} ({bad.size} rows)", column=field, row=row0 + int(bad[0]))
    return a


def _scene_frames(src: Path, group: Any, scene: int) -> tuple[str, int, int]:
    scenes = _array(src, group, "scenes", _SCENE_FIELDS)
    if not 0 <= scene < scenes.shape[0]:
        raise InputError(src, f"scene {scene} not in the zarr ({scenes.shape[0]} scenes)")
    row = _read(src, scenes, "scenes", scene, scene + 1)[0]
    f0, f1 = (int(v) for v in row["frame_index_interval"])
    if not 0 <= f0 < f1:
        raise InputError(src, f"scenes: empty or reversed frame interval {f0}:{f1}", row=scene)
    if f1 - f0 > MAX_FRAMES:
        raise InputError(src, f"scenes: {f1 - f0} frames, more than {MAX_FRAMES}", row=scene)
    host = str(row["host"]) if "host" in (row.dtype.names or ()) else ""
    return host, f0, f1


def _agent_offsets(src: Path, interval: np.ndarray, n_agents: int, f0: int) -> np.ndarray:
    """(F + 1,) absolute row offsets from (F, 2) ``agent_index_interval`` of frames ``f0:``, checked."""
    iv = interval.astype(np.float64)  # uint64 / huge values compare safely in float64
    start, end = iv[:, 0], iv[:, 1]
    bad = np.flatnonzero((end < start) | (start < 0) | (end > n_agents))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            src, f"frames: agent interval {interval[i].tolist()} outside 0:{n_agents}", row=f0 + i
        )
    gap = np.flatnonzero(start[1:] != end[:-1])
    if gap.size:
        raise InputError(src, "frames: agent intervals not contiguous", row=f0 + int(gap[0] + 1))
    big = np.flatnonzero(end - start > MAX_AGENTS_PER_FRAME)
    if big.size:
        raise InputError(src, f"frames: more than {MAX_AGENTS_PER_FRAME} agents", row=f0 + int(big[0]))
    if end[-1] - start[0] > MAX_AGENT_ROWS:
        raise InputError(src, f"frames: {int(end[-1] - start[0])} agent rows, more than {MAX_AGENT_ROWS}")
    return np.r_[start, end[-1:]].astype(np.int64)


def _ego(src: Path, fr: np.ndarray, f0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F,) timestamps, (F, 3) positions, (F,) yaw of frames ``f0:``, checked."""
    ts = fr["timestamp"]
    if ts.dtype.kind == "u" and (ts > np.iinfo(np.int64).max).any():
        raise InputError(src, "frames: timestamp beyond int64", column="timestamp")
    ts = ts.astype(np.int64)
    back = np.flatnonzero(np.diff(ts) <= 0)
    if ts[0] <= 0 or back.size:
        row = 0 if ts[0] <= 0 else int(back[0] + 1)
        raise InputError(
            src, "frames: timestamps must be positive and increase", column="timestamp", row=f0 + row
        )
    xyz = _finite(src, "frames", "ego_translation", fr["ego_translation"], row0=f0)
    rot = _finite(src, "frames", "ego_rotation", fr["ego_rotation"], lo=-1.0 - 1e-3, row0=f0)
    err = np.abs(np.einsum("nji,njk->nik", rot, rot) - np.eye(3)).max(axis=(1, 2))
    bad = np.flatnonzero(err > 1e-3)
    if bad.size:
        raise InputError(src, "frames: not a rotation matrix", column="ego_rotation", row=f0 + int(bad[0]))
    return ts, xyz, np.arctan2(rot[:, 1, 0], rot[:, 0, 0])


def _agents(src: Path, ag: np.ndarray, offsets: np.ndarray, f0: int) -> dict[str, np.ndarray]:
    """Agent rows ``offsets[0]:offsets[-1]`` (frames ``f0:``) checked and sorted by (frame, track_id)."""
    r0 = int(offsets[0])
    tid = ag["track_id"]
    tid_f = tid.astype(np.float64)  # uint64 and int64 compare safely in float64
    bad = np.flatnonzero((tid_f < 0) | (tid_f > MAX_TRACK_ID))
    if bad.size:
        raise InputError(
            src, f"agents: track_id outside [0, {MAX_TRACK_ID}]", column="track_id", row=r0 + int(bad[0])
        )
    cols = {
        "track_id": tid.astype(np.int64),
        "centroid_m": _finite(src, "agents", "centroid", ag["centroid"], row0=r0),
        "extent_lwh_m": _finite(src, "agents", "extent", ag["extent"], lo=0.0, row0=r0),
        "yaw_rad": _finite(src, "agents", "yaw", ag["yaw"], row0=r0),
        "velocity_mps": _finite(src, "agents", "velocity", ag["velocity"], row0=r0),
        "label_probs": _finite(
            src, "agents", "label_probabilities", ag["label_probabilities"], lo=0.0, row0=r0
        ),
    }
    total = cols["label_probs"].sum(axis=1)
    bad = np.flatnonzero(np.abs(total - 1.0) > PROB_SUM_TOL)
    if bad.size:
        msg = f"agents: probabilities sum to {total[bad[0]]:.4g}, not 1"
        raise InputError(src, msg, column="label_probabilities", row=r0 + int(bad[0]))
    frame = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    order = np.lexsort((cols["track_id"], frame))
    key_f, key_t = frame[order], cols["track_id"][order]
    dup = np.flatnonzero((key_f[1:] == key_f[:-1]) & (key_t[1:] == key_t[:-1]))
    if dup.size:
        raise InputError(
            src, f"agents: track {key_t[dup[0]]} twice in frame {f0 + key_f[dup[0]]}", column="track_id"
        )
    return {k: v[order] for k, v in cols.items()}


def load_l5kit_scene(src: str | Path, scene: int = 0) -> L5kitScene:
    """Read and validate one scene of an l5kit zarr.

    Checks: the arrays and fields exist with the l5kit dtypes; every chunk read is present and
    decodes; frame and agent intervals lie inside their arrays and are contiguous; at most
    ``MAX_FRAMES`` frames, ``MAX_AGENTS_PER_FRAME`` agents per frame, ``MAX_AGENT_ROWS`` rows;
    timestamps positive and strictly increasing; values finite and within ``MAX_ABS_VALUE``;
    rotations orthonormal; extents and probabilities >= 0, probabilities summing to 1; no track
    twice in a frame.

    Raises:
        MissingExtraError: zarr is not installed (the CLI exits 2 naming the extra).
        InputError: naming the zarr, the array and field, the row and the problem.
    """
    src = Path(src)
    group = _open_group(src)
    labels = group.attrs.get("labels")
    if labels is not None and tuple(labels) != LABELS:
        raise InputError(src, f"'labels' attribute is not l5kit's 17 labels: {list(labels)[:20]}")
    host, f0, f1 = _scene_frames(src, group, scene)
    frames = _array(src, group, "frames", _FRAME_FIELDS)
    agents = _array(src, group, "agents", _AGENT_FIELDS)
    fr = _read(src, frames, "frames", f0, f1)
    offsets = _agent_offsets(src, fr["agent_index_interval"], agents.shape[0], f0)
    ts, xyz, yaw = _ego(src, fr, f0)
    cols = _agents(src, _read(src, agents, "agents", int(offsets[0]), int(offsets[-1])), offsets, f0)
    return L5kitScene(str(src), host, ts, xyz, yaw, offsets - offsets[0], **cols)


def _ego_states(scene: L5kitScene) -> list[m.EgoState]:
    """Per frame: pose, backward-difference velocity, yaw rate and acceleration (zero at frame 0)."""
    ts, xy, yaw = scene.timestamp_ns, scene.ego_xyz_m[:, :2], scene.ego_yaw_rad
    dt_s = np.diff(ts) / 1e9  # (F - 1,)
    vel = np.vstack([np.zeros((1, 2)), np.diff(xy, axis=0) / dt_s[:, None]])
    yaw_rate = np.r_[0.0, np.angle(np.exp(1j * np.diff(yaw))) / dt_s]
    speed = np.hypot(vel[:, 0], vel[:, 1])
    accel = np.r_[0.0, np.diff(speed) / dt_s]
    pose = np.column_stack([xy, yaw])  # (F, 3)
    return [
        ego_state(int(t), pose[i], vel[i], accel[i], yaw_rate[i], EGO_SIZE_LWH_M) for i, t in enumerate(ts)
    ]


def import_lyft(
    src: str | Path, out: str | Path, *, overwrite: bool = False, scene: int = 0
) -> dict[str, int]:
    """Convert one scene of an l5kit zarr to a log of EgoState, Tracks and GroundTruth at 10 Hz.

    Args:
        src: the ``.zarr`` directory.
        out: output log.
        overwrite: replace ``out`` if it holds data.
        scene: index into the zarr's ``scenes``.

    Returns:
        messages written per topic.

    Raises:
        MissingExtraError: zarr is not installed (the CLI exits 2 naming the extra).
        InputError: bad or damaged zarr (see :func:`load_l5kit_scene`).
        LogExistsError: ``out`` holds data and ``overwrite`` is False (checked before reading).
    """
    refuse_existing(out, overwrite=overwrite)
    sc = load_l5kit_scene(src, scene)
    n_rows = np.diff(sc.frame_start)
    probs = sc.class_probs()  # (R, C)
    cls = probs.argmax(axis=1).astype(np.int32)
    rows = AgentRows(
        t_ns=np.repeat(sc.timestamp_ns, n_rows),
        agent_id=sc.track_id,
        class_id=cls,
        xy_m=sc.centroid_m,
        size_lwh_m=sc.extent_lwh_m,
        yaw_rad=sc.yaw_rad,
        velocity_mps=sc.velocity_mps,
    )
    egos = _ego_states(sc)
    poses = {e.header.stamp_ns: e.pose for e in egos}
    per_stamp = {s: (tr, gt) for s, tr, gt in iter_agent_messages(rows, poses, max_gap_s=0.5)}
    meta = {"source": sc.path, "scene": str(scene), "host": sc.host, "map": NO_MAP_ID}
    with import_writer(out, src, overwrite=overwrite) as w:
        w.add_metadata(METADATA_NAME, meta)
        w.write(m.empty(m.VectorMap, m.TOPIC_MAP, int(sc.timestamp_ns[0]), map_id=NO_MAP_ID))
        for i, ego in enumerate(egos):
            s = ego.header.stamp_ns
            w.write(ego)
            if s in per_stamp:
                # rows of frame i in (track_id) order, as iter_agent_messages orders them
                tracks, gt = per_stamp[s]
                a, b = sc.frame_start[i], sc.frame_start[i + 1]
                w.write(dataclasses.replace(tracks, class_probs=probs[a:b]))
                w.write(gt)
            else:
                w.write(m.empty(m.Tracks, m.TOPIC_TRACKS, s, ego_pose=ego.pose))
                w.write(m.empty(m.GroundTruth, m.TOPIC_GROUND_TRUTH, s))
        return dict(w.counts)
