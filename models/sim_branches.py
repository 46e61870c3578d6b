"""Counterfactual samples: each sample's scene under several ego plans (shard format 2).

At a branched sample tick the simulation of pass 2 (:func:`prescient.models.sim_data.generate_run`)
is exactly at the tick's time; :func:`prescient.sim_sensors.counterfactual.branch` rolls one copy
of that world per plan (physics only) and puts the simulation back, so the run, and every
ordinary sample, continues unchanged. For each branch the sample keeps:

* the ego's future under the plan: the rear axle (what ``EgoState.pose`` and the ordinary
  ``ego_future_xy_m`` hold; :class:`~prescient.sim_sensors.counterfactual.Branch` holds box
  centres), 80 points 0.1 s apart, world frame; as the model's ``ego_plan`` input; and the
  sparse ``ego_plan`` raster channel drawn from it by the onboard rasterizer (the rest of the
  raster is the sample's own: the tracks, lights and LiDAR at the tick do not depend on a plan);
* the targets: the same matched ground-truth agents (same slots) followed through the branch;
  stored as a diff against the ordinary targets (:mod:`prescient.models.shards`).

The ``keep`` branch is the simulator's own driver and must reproduce the run: its ego future and
targets are checked against the ordinary sample's (a mismatch means the branch was not taken at
the tick's state, and generation stops).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from prescient.models.shards import STORE_N_MAX, SimDataError, concat, csr_offsets, sparse
from prescient.service.model_io.config import ModelConfig
from prescient.service.model_io.features import agent_inputs_from_tracks
from prescient.sim_sensors.config import EGO_CENTER_FROM_REAR_AXLE_M
from prescient.sim_sensors.counterfactual import PLAN_KINDS, Branch, branch

if TYPE_CHECKING:
    from prescient.bus import messages as m
    from prescient.service.pipeline import Pipeline
    from prescient.service.tracks import TrackSnapshot
    from prescient.sim_sensors import Simulation


def parse_branches(text: str) -> tuple[str, ...]:
    """``"keep,slow,stop,route"`` -> kinds in that order; ``"none"`` or ``""`` -> no branches.

    Raises:
        SimDataError: an unknown or repeated kind.
    """
    kinds = tuple(k for k in text.replace(" ", "").split(",") if k and k != "none")
    bad = [k for k in kinds if k not in PLAN_KINDS]
    if bad:
        raise SimDataError(f"unknown branch plans {bad}; expected some of {list(PLAN_KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise SimDataError(f"repeated branch plans in {text!r}")
    return kinds


def rear_axle_future(b: Branch) -> np.ndarray:
    """(T, 2) float32 world rear-axle positions of the ego in branch ``b``.

    The same arithmetic as ``Simulation._ego_pose_at(0.0)`` (``math.cos`` on float64), so the
    ``keep`` branch gives the ordinary sample's ``ego_future_xy_m`` bit for bit.
    """
    off = EGO_CENTER_FROM_REAR_AXLE_M
    pts = [
        (float(x) - off * math.cos(float(yaw)), float(y) - off * math.sin(float(yaw)))
        for (x, y), yaw in zip(b.ego_xy, b.ego_yaw, strict=True)
    ]
    return np.asarray(pts, np.float64).astype(np.float32)


class BranchCutter:
    """Branches a run at its sample ticks and collects the branch fields of its samples.

    Args:
        kinds: plan kinds (:data:`~prescient.sim_sensors.counterfactual.PLAN_KINDS`), in the
            order of the shard's branch index.
        plan_channel: index of ``ego_plan`` in the raster.
        cfg: the model config the agent inputs are built with.
        future_steps: T (0.1 s samples per branch).
    """

    def __init__(self, kinds: Sequence[str], plan_channel: int, cfg: ModelConfig, future_steps: int) -> None:
        self.kinds = tuple(kinds)
        self.plan_channel = plan_channel
        self.cfg = cfg
        self.future_steps = future_steps
        self._pending: dict[int, list[Branch]] = {}
        self._applied: list[np.ndarray] = []
        self._ego_future: list[np.ndarray] = []
        self._ego_plan: list[np.ndarray] = []
        self._plan_sparse: list[tuple[np.ndarray, np.ndarray]] = []
        self._diff: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def branch_now(self, sim: Simulation) -> None:
        """Roll every plan from ``sim``'s state now (a sample tick); ``sim`` is left unchanged."""
        if self.kinds:
            horizon_s = self.future_steps * 0.1
            self._pending[sim.time_ns] = branch(sim, self.kinds, horizon_s=horizon_s)

    def add_sample(
        self,
        tick_ns: int,
        pipe: Pipeline,
        tracks: TrackSnapshot,
        ego: m.EgoState,
        gt_id: np.ndarray,
        actual: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """Append the branch fields of the sample cut at ``tick_ns`` (none applied if not branched).

        Args:
            tick_ns: the sample's tick. pipe: the pipeline that ticked (its rasterizer draws the plans).
            tracks, ego: what the tick used. gt_id: (N,) matched ground-truth ids per slot, -1 none.
            actual: the ordinary sample's ``(ego_future_xy_m (T, 2), target_xy_m (N, T, 2),
                target_valid (N, T))``.

        Raises:
            SimDataError: the ``keep`` branch does not reproduce the run.
        """
        nb, t = len(self.kinds), self.future_steps
        branches = self._pending.pop(tick_ns, None)
        for stale in [t_ns for t_ns in self._pending if t_ns < tick_ns]:  # ticks that cut no sample
            del self._pending[stale]
        applied = np.zeros(nb, bool)
        ego_future = np.zeros((nb, t, 2), np.float32)
        ego_plan = np.zeros((nb, self.cfg.plan_points, 2), np.float32)
        empty = (np.zeros(0, np.int32), np.zeros(0, np.float16))
        empty_diff = (np.zeros(0, np.int16), np.zeros((0, t, 2), np.float32), np.zeros((0, t), bool))
        for k in range(nb):
            b = branches[k] if branches is not None else None
            fut = rear_axle_future(b) if b is not None else None
            if b is None or fut is None or not b.applied or not np.isfinite(fut).all():
                self._plan_sparse.append(empty)
                self._diff.append(empty_diff)
                continue
            applied[k], ego_future[k] = True, fut
            inp = agent_inputs_from_tracks(self.cfg, tracks, ego.velocity_mps, ego.size_lwh_m, fut)
            ego_plan[k] = inp.ego_plan
            self._plan_sparse.append(sparse(pipe.render(tracks, ego, fut)[self.plan_channel]))
            diff = _target_diff(b, gt_id, actual[1], actual[2])
            if b.plan.kind == "keep" and (len(diff[0]) or not np.array_equal(fut, actual[0])):
                raise SimDataError(
                    f"keep branch at {tick_ns} ns differs from the run ({len(diff[0])} agents): "
                    "the branch was not taken at the tick's state"
                )
            self._diff.append(diff)
        self._applied.append(applied)
        self._ego_future.append(ego_future)
        self._ego_plan.append(ego_plan)

    def arrays(self) -> dict[str, np.ndarray]:
        """The ``branch_*`` shard fields of the samples added so far (see :mod:`prescient.models.shards`)."""
        nb, t, p = len(self.kinds), self.future_steps, self.cfg.plan_points
        if not self.kinds:
            return {}
        s = len(self._applied)
        idx = [x[0] for x in self._plan_sparse]
        slots = [d[0] for d in self._diff]
        return {
            "branch_applied": np.stack(self._applied) if s else np.zeros((0, nb), bool),
            "branch_ego_future_xy_m": np.stack(self._ego_future)
            if s
            else np.zeros((0, nb, t, 2), np.float32),
            "branch_ego_plan": np.stack(self._ego_plan) if s else np.zeros((0, nb, p, 2), np.float32),
            "branch_plan_off": csr_offsets(idx),
            "branch_plan_idx": concat(idx, np.zeros(0, np.int32)),
            "branch_plan_val": concat([x[1] for x in self._plan_sparse], np.zeros(0, np.float16)),
            "branch_diff_off": csr_offsets(slots),
            "branch_diff_slot": concat(slots, np.zeros(0, np.int16)),
            "branch_diff_xy_m": concat([d[1] for d in self._diff], np.zeros((0, t, 2), np.float32)),
            "branch_diff_valid": concat([d[2] for d in self._diff], np.zeros((0, t), bool)),
        }

    def counts(self) -> dict[str, int]:
        """Samples that have each branch kind."""
        if not self._applied:
            return {k: 0 for k in self.kinds}
        n = np.stack(self._applied).sum(axis=0)
        return {k: int(v) for k, v in zip(self.kinds, n, strict=True)}


def _target_diff(
    b: Branch, gt_id: np.ndarray, target: np.ndarray, tvalid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slots whose future under ``b`` differs from the ordinary target, with that future.

    Args:
        b: the branch. gt_id: (N,) int64 matched ground-truth id per slot, -1: none.
        target: (N, T, 2) float32 world ordinary targets (zeros where invalid). tvalid: (N, T).

    Returns:
        slots (K,) int16, xy (K, T, 2) float32 world (zeros where invalid), valid (K, T) bool.
    """
    n, t = gt_id.shape[0], target.shape[1]
    xy = np.zeros((n, t, 2), np.float32)
    valid = np.zeros((n, t), bool)
    rows = np.searchsorted(b.agent_ids, gt_id)
    rows = np.minimum(rows, max(len(b.agent_ids) - 1, 0))
    hit = gt_id >= 0
    if len(b.agent_ids):
        hit &= b.agent_ids[rows] == gt_id
    else:
        hit[:] = False
    # Agents matched at the tick exist in the branch world (same state); a miss would be a bug
    # upstream, and the slot then keeps no target (as the ordinary sample would not have one).
    valid[hit] = b.valid[rows[hit], :t]
    xy[hit] = np.where(valid[hit][..., None], b.xy[rows[hit], :t], 0.0).astype(np.float32)
    differs = (xy != target).any(axis=(1, 2)) | (valid != tvalid).any(axis=1)
    slots = np.flatnonzero(differs)
    if n > STORE_N_MAX:  # slots are stored as int16 (STORE_N_MAX fits)
        raise SimDataError(f"{n} slots, more than the {STORE_N_MAX} a shard stores")
    return slots.astype(np.int16), xy[slots], valid[slots]
