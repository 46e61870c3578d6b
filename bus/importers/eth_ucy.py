"""ETH/UCY pedestrian files (``frame ped_id x y``, tab-separated, 0.4 s per 10 frames) -> logs.

Time: ``stamp_ns = frame_id * 40 ms`` (10 video frames = 0.4 s, the convention of Social GAN
and Trajectron++), so frame gaps in a file become time gaps. Positions are the scene's own
metric world plane (arbitrary origin per scene).

The log holds, at every annotated frame (native 2.5 Hz): ``Tracks`` (ground truth as tracks:
class PEDESTRIAN, backward-difference velocities, history interpolated to 0.1 s), the matching
``GroundTruth``, and an ``EgoState`` of a virtual, static observer at the centre of the scene
(ETH/UCY has no ego vehicle; the raster needs a centre).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Final

import numpy as np

from prescient.bus import messages as m
from prescient.bus.importers import INT64_MAX, MAX_ABS_VALUE, InputError, import_writer
from prescient.bus.importers._tracks import AgentRows, default_sizes, ego_state, iter_agent_messages
from prescient.bus.logfile import refuse_existing

FRAME_DT_NS: Final = 40_000_000  # one video frame; annotated every 10 frames = 0.4 s
STEP_FRAMES: Final = 10
OBSERVER_SIZE_LWH_M: Final = (0.1, 0.1, 0.1)


@dataclasses.dataclass(frozen=True)
class EthUcyScene:
    """One ETH/UCY file as arrays, rows sorted by (frame, ped).

    Attributes:
        path: source file.
        frame_id: (R,) int64 video frame numbers.
        ped_id: (R,) int64 pedestrian ids (unique within the file).
        xy_m: (R, 2) float64 world-plane positions, metres.
    """

    path: str
    frame_id: np.ndarray
    ped_id: np.ndarray
    xy_m: np.ndarray

    def trajectories(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """ped_id -> (frames (n,), xy_m (n, 2)) in time order."""
        order = np.lexsort((self.frame_id, self.ped_id))
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        pid = self.ped_id[order]
        starts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
        for s, e in zip(starts, np.r_[starts[1:], len(pid)]):
            idx = order[s:e]
            out[int(pid[s])] = (self.frame_id[idx], self.xy_m[idx])
        return out


def load_eth_ucy_scene(path: str | Path) -> EthUcyScene:
    """Read and validate one ``frame ped_id x y`` file.

    Checks: 4 numeric columns per line, no NaN/inf, integral frame and ped ids, frames
    non-decreasing through the file, no duplicate (frame, ped), and each pedestrian's frames
    spaced by multiples of 10; frames >= 0 whose time fits int64 ns, ped ids that fit int64,
    positions within ``MAX_ABS_VALUE`` metres.

    Raises:
        InputError: naming the file, the line (1-based) and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    rows: list[tuple[float, float, float, float]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise InputError(
                    path, f"line {lineno}: expected 4 columns (frame ped_id x y), got {len(parts)}"
                )
            try:
                vals = tuple(float(p) for p in parts)
            except ValueError as e:
                raise InputError(path, f"line {lineno}: not a number: {e}") from e
            if not all(np.isfinite(vals)):
                col = ("frame", "ped_id", "x", "y")[int(np.flatnonzero(~np.isfinite(vals))[0])]
                raise InputError(path, f"line {lineno}: NaN or inf", column=col)
            rows.append(vals)  # type: ignore[arg-type]
    if not rows:
        raise InputError(path, "no data rows")
    a = np.asarray(rows, np.float64)
    frame, ped = a[:, 0], a[:, 1]
    for col, v in (("frame", frame), ("ped_id", ped)):
        bad = np.flatnonzero(v != np.round(v))
        if bad.size:
            raise InputError(path, f"line {bad[0] + 1}: {col} {v[bad[0]]} is not an integer", column=col)
    # float64 bounds just inside int64 (2**63 itself is a float64, one past the range)
    limits: tuple[tuple[str, np.ndarray, float, float], ...] = (
        ("frame", frame, 0.0, float(INT64_MAX // FRAME_DT_NS)),
        ("ped_id", ped, -(2.0**62), 2.0**62),
    )
    limits += tuple((c, a[:, k], -MAX_ABS_VALUE, MAX_ABS_VALUE) for k, c in ((2, "x"), (3, "y")))
    for col, v, lo, hi in limits:
        bad = np.flatnonzero((v < lo) | (v > hi))
        if bad.size:
            raise InputError(
                path, f"line {bad[0] + 1}: {col} {v[bad[0]]} out of range [{lo:g}, {hi:g}]", column=col
            )
    back = np.flatnonzero(np.diff(frame) < 0)
    if back.size:
        i = back[0] + 1
        raise InputError(
            path,
            f"line {i + 1}: non-monotonic time: frame {int(frame[i])} after {int(frame[i - 1])}",
            column="frame",
        )
    frame_i, ped_i = frame.astype(np.int64), ped.astype(np.int64)
    order = np.lexsort((frame_i, ped_i))
    same_ped = ped_i[order][1:] == ped_i[order][:-1]
    dframe = np.diff(frame_i[order])
    dup = np.flatnonzero(same_ped & (dframe == 0))
    if dup.size:
        line = order[dup[0] + 1] + 1
        raise InputError(
            path,
            f"line {line}: duplicate row for ped {ped_i[order][dup[0]]} at frame {frame_i[order][dup[0]]}",
        )
    odd = np.flatnonzero(same_ped & (dframe % STEP_FRAMES != 0))
    if odd.size:
        line = order[odd[0] + 1] + 1
        raise InputError(
            path,
            f"line {line}: frame step {dframe[odd[0]]} is not a multiple of {STEP_FRAMES}",
            column="frame",
        )
    return EthUcyScene(str(path), frame_i, ped_i, a[:, 2:4].copy())


def import_eth_ucy(src: str | Path, out: str | Path, *, overwrite: bool = False) -> dict[str, int]:
    """Convert one ETH/UCY file to a log of Tracks, GroundTruth and EgoState at 2.5 Hz.

    Args:
        src: the ``frame ped_id x y`` text file.
        out: output log.
        overwrite: replace ``out`` if it holds data.

    Returns:
        messages written per topic.

    Raises:
        InputError: bad input file.
        LogExistsError: ``out`` holds data and ``overwrite`` is False (checked before reading).
    """
    refuse_existing(out, overwrite=overwrite)
    scene = load_eth_ucy_scene(src)
    cls = np.full(len(scene.ped_id), m.AgentClass.PEDESTRIAN, np.int32)
    rows = AgentRows(
        t_ns=scene.frame_id * FRAME_DT_NS,
        agent_id=scene.ped_id,
        class_id=cls,
        xy_m=scene.xy_m,
        size_lwh_m=default_sizes(cls),
    )
    centre = scene.xy_m.mean(axis=0)
    pose = np.array([centre[0], centre[1], 0.0])
    with import_writer(out, src, overwrite=overwrite) as w:
        # A track whose predecessor sample is 0.4 s earlier: never bridge more than ~1 step.
        for stamp, tracks, gt in iter_agent_messages(rows, pose, max_gap_s=0.5):
            w.write(ego_state(stamp, pose, np.zeros(2), 0.0, 0.0, OBSERVER_SIZE_LWH_M))
            w.write(tracks)
            w.write(gt)
        return dict(w.counts)
