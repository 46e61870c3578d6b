"""Training samples of simulator shards, assembled into torch batches (with counterfactual branches).

Used by :mod:`prescient.models.train_sim`; shards in memory or read on demand
(:mod:`prescient.models.shard_stream`).
"""

from __future__ import annotations

import numpy as np
import torch

from prescient.models.sim_data import STORE_N_MAX, Shard, SimDataError, targets_in_agent_frame
from prescient.models.sim_runs import HELD_OUT_MIN_SEED, is_held_out


class SimSamples:
    """All samples of some shards, in memory (rasters sparse), assembled into torch batches.

    A sample is a scene at one tick; with shards of format 2 each scene may also have
    counterfactual branches (the same scene under other ego plans, :mod:`prescient.models.shards`),
    addressed by their index in :attr:`branch_names`. Branch -1 is the sample as it happened.

    Args:
        shards: loaded shards (same raster spec; those with branches all with the same branch list).
        n_max: agent slots per sample (nearest first, <= the stored 128).
        allow_held_out: accept runs of the held-out evaluation seeds
            (:data:`prescient.models.sim_runs.HELD_OUT_MIN_SEED` on); training never should.
        device: where batches are made: rasters are scattered from their sparse cells there
            (on a GPU this keeps the dense copy off the CPU and the bus).

    Raises:
        SimDataError: no shards, mixed specs or branch lists, ``n_max`` out of range, or a
            held-out run.
    """

    def __init__(
        self, shards: list[Shard], n_max: int, allow_held_out: bool = False, device: str = "cpu"
    ) -> None:
        if not shards:
            raise SimDataError("no shards to train on")
        specs = {str(s.meta["raster_spec"]) for s in shards}
        if len(specs) != 1:
            raise SimDataError(f"shards mix raster specs {sorted(specs)}")
        if not 1 <= n_max <= STORE_N_MAX:
            raise SimDataError(f"n_max must be in [1, {STORE_N_MAX}], got {n_max}")
        held = [s.path.stem for s in shards if is_held_out(int(s.meta["seed"]))]
        if held and not allow_held_out:
            raise SimDataError(
                f"runs {held[:4]} are held-out evaluation seeds (>= {HELD_OUT_MIN_SEED}): not for training"
            )
        lists = {tuple(s.branches) for s in shards if s.branches}
        if len(lists) > 1:
            raise SimDataError(f"shards mix branch lists {sorted(lists)}")
        self.branch_names: list[str] = list(next(iter(lists))) if lists else []
        self.shards = shards
        self.n_max = n_max
        self.meta = shards[0].meta
        self.index = [(si, i) for si, s in enumerate(shards) for i in range(s.num_samples)]
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.index)

    def branch_index(self, kind: str) -> int:
        """Index of plan kind ``kind`` (e.g. ``"stop"``) in :attr:`branch_names`.

        Raises:
            SimDataError: the shards have no such branch.
        """
        if kind not in self.branch_names:
            raise SimDataError(f"no {kind!r} branch; the shards have {self.branch_names}")
        return self.branch_names.index(kind)

    def available(self, items: list[int]) -> np.ndarray:
        """(B, NB) bool: which branches each sample of ``items`` has (NB = len(branch_names))."""
        out = np.zeros((len(items), len(self.branch_names)), bool)
        for j, it in enumerate(items):
            si, i = self.index[it]
            s = self.shards[si]
            if s.branches:
                out[j] = s.arrays["branch_applied"][i]
        return out

    def batch(
        self,
        items: list[int],
        route_mask: np.ndarray | None = None,
        branch: np.ndarray | list[int] | None = None,
        pair_branch: np.ndarray | list[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Tensors for samples ``items`` (indices into ``self.index``).

        Keys: ``raster`` (B, C, H, W); ``agent_hist``, ``agent_state``, ``agent_valid`` (B, n_max, ...);
        ``ego_state`` (B, 5); ``ego_plan`` (B, P, 2); ``fut`` (B, n_max, T, 2) agent-frame targets;
        ``fv`` (B, n_max, T) float mask.

        Args:
            items: sample indices.
            route_mask: (B,) bool, True to use the route plan for that sample (only where the
                sample's branch is -1).
            branch: (B,) int, per sample the branch (index into :attr:`branch_names`) whose ego
                plan (input and raster channel) and targets to return; -1 or None: the sample as
                it happened (actual future).
            pair_branch: (B,) int, pair mode: also return branch ``pair_branch[j]`` of the same
                scene under the keys ``raster_b``, ``ego_state_b``, ``ego_plan_b``, ``fut_b``,
                ``fv_b`` (-1: the actual future). The agent inputs (same slots, same agents) are
                shared; ``fut`` and ``fut_b`` are the same agents' futures under the two plans.

        Raises:
            SimDataError: a requested branch the sample does not have (see :meth:`available`).
        """
        b = len(items)
        br = np.full(b, -1, np.int64) if branch is None else np.asarray(branch, np.int64)
        route = np.zeros(b, bool) if route_mask is None else np.asarray(route_mask, bool)
        res = self._side(items, br, route & (br < 0))
        rows = [(self.shards[si].arrays, i) for si, i in (self.index[it] for it in items)]
        for k in ("agent_hist", "agent_state", "agent_valid"):  # plan-independent: shared by a pair
            res[k] = torch.from_numpy(np.stack([a[k][i, : self.n_max] for a, i in rows])).to(self.device)
        if pair_branch is not None:
            other = self._side(items, np.asarray(pair_branch, np.int64), np.zeros(b, bool))
            res.update({k + "_b": v for k, v in other.items()})
        return res

    def _side(self, items: list[int], branch: np.ndarray, route: np.ndarray) -> dict[str, torch.Tensor]:
        """Plan-dependent tensors (raster, ego_state, ego_plan, fut, fv) of ``items`` under ``branch``."""
        n = self.n_max
        cells: list[tuple[np.ndarray, np.ndarray]] = []
        out: dict[str, list[np.ndarray]] = {k: [] for k in ("ego_state", "ego_plan", "fut", "fv")}
        for j, it in enumerate(items):
            si, i = self.index[it]
            s, bj = self.shards[si], int(branch[j])
            a = s.arrays
            cells.append(s.raster_sparse(i, route_plan=bool(route[j]), branch=None if bj < 0 else bj))
            suffix = "_route" if route[j] else ""
            out["ego_state"].append(a["ego_state" + suffix][i])
            if bj < 0:
                out["ego_plan"].append(a["ego_plan" + suffix][i])
                fut, tvalid = self._future(s, i), a["target_valid"][i, :n]
            else:
                out["ego_plan"].append(a["branch_ego_plan"][i, bj])
                fut, tvalid = self._branch_future(s, i, bj)
            out["fut"].append(fut)
            fv = tvalid & (a["agent_valid"][i, :n, None] > 0)
            out["fv"].append(fv.astype(np.float32))
        res = {k: torch.from_numpy(np.stack(v)).to(self.device) for k, v in out.items()}
        res["raster"] = self._dense(cells)
        return res

    def _dense(self, cells: list[tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
        """(B, C, H, W) float32 rasters on :attr:`device` from each sample's sparse cells."""
        c, h, w = (int(v) for v in self.meta["raster_shape"])
        idx = np.concatenate([ix + j * c * h * w for j, (ix, _) in enumerate(cells)])
        val = np.concatenate([v for _, v in cells])
        if self.device.type == "cpu":
            raster = np.zeros((len(cells), c, h, w), np.float32)
            raster.reshape(-1)[idx] = val
            return torch.from_numpy(raster)
        flat = torch.zeros(len(cells) * c * h * w, dtype=torch.float32, device=self.device)
        flat[torch.from_numpy(idx).to(self.device)] = torch.from_numpy(val).to(self.device).float()
        return flat.view(len(cells), c, h, w)

    def _future(self, s: Shard, i: int) -> np.ndarray:
        """(n_max, T, 2) agent-frame targets of sample ``i`` (computed per batch: at 30k samples a
        precomputed copy would hold another ~80 kB per sample in memory)."""
        a, n = s.arrays, self.n_max
        return targets_in_agent_frame(
            a["target_xy_m"][i, :n], a["target_valid"][i, :n], a["agent_pose_world"][i, :n]
        )

    def _branch_future(self, s: Shard, i: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Agent-frame targets (n_max, T, 2) and validity (n_max, T) of sample ``i`` under branch ``b``:
        the sample's own, with the slots the branch changed replaced."""
        n = self.n_max
        slots, xy, valid = s.branch_diff(i, b)
        fut = self._future(s, i)
        tvalid = s.arrays["target_valid"][i, :n].copy()
        keep = slots < n
        slots = slots[keep]
        if len(slots):
            pose = s.arrays["agent_pose_world"][i, slots]
            fut[slots] = targets_in_agent_frame(xy[keep], valid[keep], pose)
            tvalid[slots] = valid[keep]
        return fut, tvalid


def choose_pairs(
    avail: np.ndarray, rng: np.random.Generator, route: int = -1, route_fraction: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The two plans (branch indices, -1: the actual future) each scene of a pair step trains on.

    Args:
        avail: (B, NB) bool, the branches each scene has.
        route: index of the alternative-route branch (-1: none asked for).
        route_fraction: a scene with that branch is paired (actual future, route) with this
            probability; otherwise, and for every other scene, two distinct plans are drawn
            uniformly (the same plan twice when the scene has no branch).

    Returns:
        (a, b), each (B,) int64.
    """
    a, b = np.full(len(avail), -1, np.int64), np.full(len(avail), -1, np.int64)
    for j, row in enumerate(avail):
        have = np.concatenate([[-1], np.flatnonzero(row)])
        # The extra draw only when asked for: other runs keep their random stream.
        if route >= 0 and row[route] and rng.random() < route_fraction:
            b[j] = route
        elif have.size >= 2:
            a[j], b[j] = rng.choice(have, 2, replace=False)
    return a, b
