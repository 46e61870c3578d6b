"""The on-disk format of simulation training shards (:mod:`prescient.models.sim_data` writes them).

One ``<scenario>_s<seed>.npz`` per run, a zip of ``.npy`` arrays read with ``allow_pickle=False``.
Written by :func:`write_shard` with fixed zip timestamps and sorted member names, so the same
arrays give the same bytes on any machine and with any number of workers; written to a
``.tmp.npz`` name and renamed, so a shard that exists is complete.

Per sample (S samples, N = :data:`STORE_N_MAX` agent slots, T = 80 future steps of 0.1 s,
P plan points of the model input):

* rasters sparse: ``raster_off`` (S+1,) int64 CSR offsets into ``raster_idx`` (int32 flat
  indices into the (C, H, W) raster) and ``raster_val`` (float16); ``route_*`` the same for the
  ``ego_plan`` channel alone (H*W plane) drawn from the simulator's route;
* agent inputs, ``target_xy_m`` (S, N, T, 2) float32 world, ``target_valid`` (S, N, T) bool and
  the other fields listed in :mod:`prescient.models.sim_data` (the ego's actual future).

Format 2 adds counterfactual branches (B = ``len(meta["branches"])`` plan kinds, e.g. ``keep,
slow, stop, route``; :mod:`prescient.models.sim_branches`). The raster of a branch differs from
the sample's only in the ``ego_plan`` channel, and most agents' futures not at all, so a branch
stores only what differs:

* ``branch_applied`` (S, B) bool: the sample has this branch (False: not branched at this tick,
  or a ``route`` plan without a junction choice);
* ``branch_ego_future_xy_m`` (S, B, T, 2) float32 world: the ego's rear axle under the plan
  (the ``ConditionalRequest`` plan, as ``ego_future_xy_m`` is for the actual future);
* ``branch_ego_plan`` (S, B, P, 2) float32: that plan as the model's ``ego_plan`` input;
* ``branch_plan_off`` (S*B+1,) int64, ``branch_plan_idx`` int32, ``branch_plan_val`` float16:
  the sparse ``ego_plan`` channel of row ``i*B + b``;
* ``branch_diff_off`` (S*B+1,) int64 CSR into ``branch_diff_slot`` (K,) int16,
  ``branch_diff_xy_m`` (K, T, 2) float32 world and ``branch_diff_valid`` (K, T) bool: the slots
  whose target under the branch differs from ``target_xy_m`` / ``target_valid``, with their
  branch targets. Every other slot's branch target is the sample's own.

Format 1 shards (no branches) still load: they have ``branches == []``.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
STORE_N_MAX = 128  # slots stored per sample (nearest first)
# Zip member timestamps: fixed, so a shard's bytes depend on its arrays only.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

Float32Array = npt.NDArray[np.float32]


class SimDataError(ValueError):
    """A data directory or shard is missing, malformed or of another format version."""


def sparse(dense: np.ndarray) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float16]]:
    """Flat int32 indices and float16 values of the non-zero entries of ``dense``."""
    flat = dense.reshape(-1)
    idx = np.flatnonzero(flat).astype(np.int32)
    return idx, flat[idx].astype(np.float16)


def csr_offsets(rows: list[np.ndarray]) -> npt.NDArray[np.int64]:
    """(len(rows)+1,) int64 offsets of ``rows`` concatenated."""
    return np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)


def concat(rows: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    """``rows`` concatenated along axis 0, or ``empty`` (the right dtype and trailing shape) if none."""
    return np.concatenate(rows) if rows else empty


def write_shard(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write one shard atomically (``.tmp.npz``, fsync, rename) with reproducible bytes.

    Like ``np.savez_compressed``, but members are sorted by name and carry a fixed timestamp, so
    identical arrays give an identical file (the workers-independence of ``generate`` is checked
    on bytes).
    """
    tmp = path.with_suffix(".tmp.npz")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arrays[key]), allow_pickle=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_meta(path: Path) -> dict[str, Any]:
    """The ``meta_json`` of a shard (reads that member only).

    Raises:
        SimDataError: unreadable shard or a format version this code does not read.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta_json"]).decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise SimDataError(f"{path}: not a sim-data shard: {e}") from e
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise SimDataError(
            f"{path}: format version {meta.get('format_version')}, this code reads {list(READABLE_VERSIONS)}"
        )
    return dict(meta)


def list_shards(data_dir: Path) -> list[Path]:
    """Shards in ``data_dir``, sorted by name (temporary ``.tmp.npz`` files excluded).

    Raises:
        SimDataError: when the folder is missing or holds no shard.
    """
    if not data_dir.is_dir():
        raise SimDataError(f"data folder not found: {data_dir}")
    shards = sorted(p for p in data_dir.glob("*.npz") if not p.name.endswith(".tmp.npz"))
    if not shards:
        raise SimDataError(f"no .npz shards in {data_dir}; run `prescient data generate --out {data_dir}`")
    return shards


@dataclass
class Shard:
    """One loaded shard: arrays in memory, rasters still sparse."""

    path: Path
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def num_samples(self) -> int:
        """S."""
        return int(self.arrays["raster_off"].shape[0] - 1)

    @property
    def branches(self) -> list[str]:
        """Plan kinds of the branches, in branch-index order; ``[]`` for a format-1 shard."""
        return [str(b) for b in self.meta.get("branches", [])]

    def has_branch(self, i: int, b: int) -> bool:
        """Whether sample ``i`` has branch ``b`` (index into :attr:`branches`)."""
        if not 0 <= b < len(self.branches):
            return False
        return bool(self.arrays["branch_applied"][i, b])

    def _check_branch(self, i: int, b: int) -> int:
        if not self.has_branch(i, b):
            raise SimDataError(f"{self.path.name}: sample {i} has no branch {b} (branches {self.branches})")
        return i * len(self.branches) + b

    def raster(
        self, i: int, out: np.ndarray | None = None, route_plan: bool = False, branch: int | None = None
    ) -> Float32Array:
        """Dense (C, H, W) float32 raster of sample ``i``.

        Args:
            i: sample index.
            out: optional (C, H, W) float32 buffer to fill (zeroed here).
            route_plan: draw the ``ego_plan`` channel from the simulator's route instead of the
                ego's actual future.
            branch: draw the ``ego_plan`` channel from the plan of this branch (index into
                :attr:`branches`; overrides ``route_plan``). None: the actual future.

        Raises:
            SimDataError: the sample has no such branch.
        """
        shape = tuple(int(v) for v in self.meta["raster_shape"])
        if out is None:
            out = np.zeros(shape, np.float32)
        else:
            out[...] = 0.0
        idx, val = self.raster_sparse(i, route_plan, branch)
        out.reshape(-1)[idx] = val
        return out

    def raster_sparse(
        self, i: int, route_plan: bool = False, branch: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float16]]:
        """The non-zero cells of :meth:`raster` (same arguments): flat indices into the (C, H, W)
        raster (unique) and their float16 values. A batch can be scattered where it is used
        (on the GPU while training) instead of copying dense rasters."""
        a = self.arrays
        lo, hi = a["raster_off"][i], a["raster_off"][i + 1]
        idx, val = a["raster_idx"][lo:hi].astype(np.int64), a["raster_val"][lo:hi]
        prefix, row = ("route", i) if route_plan else ("", -1)
        if branch is not None:
            prefix, row = "branch_plan", self._check_branch(i, branch)
        if not prefix:
            return idx, val
        h, w = (int(v) for v in self.meta["raster_shape"][1:])
        plane0 = int(self.meta["plan_channel"]) * h * w
        keep = (idx < plane0) | (idx >= plane0 + h * w)  # the plan channel is replaced
        lo, hi = a[prefix + "_off"][row], a[prefix + "_off"][row + 1]
        plan_idx = a[prefix + "_idx"][lo:hi].astype(np.int64) + plane0
        return np.concatenate([idx[keep], plan_idx]), np.concatenate([val[keep], a[prefix + "_val"][lo:hi]])

    def branch_diff(self, i: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Slots (K,) whose target differs under branch ``b`` of sample ``i``, their (K, T, 2)
        world targets and (K, T) validity."""
        row = self._check_branch(i, b)
        a = self.arrays
        lo, hi = a["branch_diff_off"][row], a["branch_diff_off"][row + 1]
        return (
            a["branch_diff_slot"][lo:hi].astype(np.int64),
            a["branch_diff_xy_m"][lo:hi],
            a["branch_diff_valid"][lo:hi],
        )

    def branch_targets(self, i: int, b: int) -> tuple[Float32Array, npt.NDArray[np.bool_]]:
        """(N, T, 2) float32 world targets and (N, T) validity of sample ``i`` under branch ``b``."""
        slots, xy, valid = self.branch_diff(i, b)
        target = self.arrays["target_xy_m"][i].copy()
        tvalid = self.arrays["target_valid"][i].copy()
        target[slots] = xy
        tvalid[slots] = valid
        return target, tvalid


def load_shard(path: Path) -> Shard:
    """Read a whole shard into memory (``allow_pickle=False``)."""
    meta = read_meta(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta_json"}
    return Shard(path, meta, arrays)


def iter_shards(data_dir: Path) -> Iterator[Shard]:
    """Load every shard of ``data_dir`` in name order."""
    for p in list_shards(data_dir):
        yield load_shard(p)


def targets_in_agent_frame(
    target_xy_m: np.ndarray, target_valid: np.ndarray, agent_pose_world: np.ndarray
) -> Float32Array:
    """World-frame targets (..., N, T, 2) to each agent's frame (origin at the agent, x along yaw).

    Args:
        target_xy_m: (..., N, T, 2) world. target_valid: (..., N, T). agent_pose_world: (..., N, 3).

    Returns:
        (..., N, T, 2) float32, zeros where invalid.
    """
    yaw = agent_pose_world[..., 2]
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    d = target_xy_m.astype(np.float64) - agent_pose_world[..., None, :2]
    x = c * d[..., 0] + s * d[..., 1]
    y = -s * d[..., 0] + c * d[..., 1]
    out = np.stack([x, y], -1) * target_valid[..., None]
    return out.astype(np.float32)
