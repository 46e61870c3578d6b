"""Train :class:`prescient.models.net.TrajectoryNet` on simulation shards from :mod:`prescient.models.sim_data`.

Scheduled by steps, seeded and resumable: ``max_steps`` is the schedule (the learning rate
follows the step); the full training state is saved every ``checkpoint_every`` steps, and a run
stopped by its wall-clock limit or killed resumes to the same weights as an uninterrupted one. Loss: winner-takes-all Laplace NLL plus mode
cross-entropy (:func:`prescient.models.net.wta_laplace_loss`), on agent-frame targets with their validity
mask. Runs are split into train and validation by run (never by sample: neighbouring ticks are
correlated). The best checkpoint by validation minADE_K is kept.

Plan conditioning: each sample carries two plans. With probability ``route_plan_fraction`` the
simulator's route (``EgoState.plan_xy_m``, what a plain onboard tick passes) is used in both the
``ego_plan`` raster channel and the ``ego_plan`` input; otherwise the ego's actual next 8 s
(80 positions at 0.1 s, what :class:`prescient.bus.messages.ConditionalRequest` carries) is used. The net
so sees both plan kinds that reach it at runtime, and learns that a timed plan tells it what the
ego will do.

Training uses fewer agent slots (``n_max``, nearest first) than the export (128): no weight
depends on ``n_max``, so :func:`export_best` rebuilds the net with 128 slots and loads the weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prescient.models.export import export_onnx, load_checkpoint, onnx_parity, save_checkpoint
from prescient.models.net import TrajectoryNet, wta_laplace_loss
from prescient.models.sim_data import (
    STORE_N_MAX,
    Shard,
    SimDataError,
    list_shards,
    load_shard,
    targets_in_agent_frame,
)
from prescient.models.sim_runs import HELD_OUT_MIN_SEED, is_held_out
from prescient.models.train_state import TrainState, trim_metrics
from prescient.service.model_io.config import ModelConfig

log = logging.getLogger(__name__)

EXPORT_N_MAX = 128

MODEL_SIZES: dict[str, dict[str, Any]] = {
    # Sized for CPU training in ~30 min on 2 shared cores; the 58-channel stem dominates the cost.
    "small": dict(stem_channels=8, stage_channels=(24, 48, 64), d_model=96, num_heads=4, num_layers=2),
    # Tests only.
    "tiny": dict(stem_channels=8, stage_channels=(8, 16, 16), d_model=32, num_heads=2, num_layers=1),
}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    Attributes:
        seed: torch / numpy seed.
        max_steps: optimiser steps: the schedule's length (the learning rate follows the step).
        minutes: wall-clock stop, None: none. A run it stops is incomplete, not shorter: its state
            is saved and a resumed run finishes the same schedule.
        checkpoint_every: steps between saves of the full training state (``last.pt``).
        batch_size: scenes per step.
        lr: peak AdamW learning rate (cosine decay to 5 %).
        weight_decay: AdamW weight decay.
        n_max: agent slots while training (nearest first).
        val_fraction: fraction of runs held out for validation (at least one run).
        val_every: validate every this many steps (and at the end).
        val_max_samples: cap on validation samples (evenly spread).
        route_plan_fraction: probability a sample uses the route plan instead of the actual future.
        model_size: key of :data:`MODEL_SIZES`.
        num_modes: K.
    """

    seed: int = 0
    max_steps: int = 420
    minutes: float | None = None
    checkpoint_every: int = 50
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    n_max: int = 48
    val_fraction: float = 0.1
    val_every: int = 200
    val_max_samples: int = 160
    route_plan_fraction: float = 0.3
    model_size: str = "small"
    num_modes: int = 6


def model_config_for(meta: dict[str, Any], size: str, n_max: int, num_modes: int = 6) -> ModelConfig:
    """The :class:`ModelConfig` for shards with ``meta`` (raster shape, spec, channel names)."""
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; expected one of {sorted(MODEL_SIZES)}")
    c, h, w = (int(v) for v in meta["raster_shape"])
    return ModelConfig(
        in_channels=c,
        raster_hw=(h, w),
        n_max=n_max,
        num_modes=num_modes,
        raster_spec_version=str(meta["raster_spec"]),
        channel_names=tuple(meta["channel_names"]),
        **MODEL_SIZES[size],
    )


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

    Raises:
        SimDataError: no shards, mixed specs or branch lists, ``n_max`` out of range, or a
            held-out run.
    """

    def __init__(self, shards: list[Shard], n_max: int, allow_held_out: bool = False) -> None:
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
            res[k] = torch.from_numpy(np.stack([a[k][i, : self.n_max] for a, i in rows]))
        if pair_branch is not None:
            other = self._side(items, np.asarray(pair_branch, np.int64), np.zeros(b, bool))
            res.update({k + "_b": v for k, v in other.items()})
        return res

    def _side(self, items: list[int], branch: np.ndarray, route: np.ndarray) -> dict[str, torch.Tensor]:
        """Plan-dependent tensors (raster, ego_state, ego_plan, fut, fv) of ``items`` under ``branch``."""
        n = self.n_max
        c, h, w = (int(v) for v in self.meta["raster_shape"])
        raster = np.zeros((len(items), c, h, w), np.float32)
        out: dict[str, list[np.ndarray]] = {k: [] for k in ("ego_state", "ego_plan", "fut", "fv")}
        for j, it in enumerate(items):
            si, i = self.index[it]
            s, bj = self.shards[si], int(branch[j])
            a = s.arrays
            s.raster(i, out=raster[j], route_plan=bool(route[j]), branch=None if bj < 0 else bj)
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
        res = {k: torch.from_numpy(np.stack(v)) for k, v in out.items()}
        res["raster"] = torch.from_numpy(raster)
        return res

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


def split_runs(shards: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Split shard files (one per run) into train / validation, seeded, at least one of each."""
    if len(shards) < 2:
        raise SimDataError(f"need at least 2 runs to split train/validation, got {len(shards)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(shards))
    n_val = min(len(shards) - 1, max(1, int(round(val_fraction * len(shards)))))
    val = sorted(shards[i] for i in order[:n_val])
    train = sorted(shards[i] for i in order[n_val:])
    return train, val


def _forward(model: TrajectoryNet, bt: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return model.forward_logits(
        bt["raster"], bt["agent_hist"], bt["agent_state"], bt["agent_valid"], bt["ego_state"], bt["ego_plan"]
    )


@torch.no_grad()
def validate(model: TrajectoryNet, data: SimSamples, items: list[int], batch_size: int) -> dict[str, float]:
    """Mean loss terms and minADE_K / minFDE_K (metres, over agents with a full 8 s future)."""
    model.eval()
    tot: dict[str, float] = {"loss": 0.0, "nll": 0.0, "ce": 0.0}
    ade_sum = fde_sum = 0.0
    n_full = 0
    n_batches = 0
    for k in range(0, len(items), batch_size):
        bt = data.batch(items[k : k + batch_size])
        traj, logits, scale = _forward(model, bt)
        loss, stats = wta_laplace_loss(traj, logits, scale, bt["fut"], bt["fv"])
        tot["loss"] += float(loss)
        tot["nll"] += stats["nll"]
        tot["ce"] += stats["ce"]
        n_batches += 1
        full = bt["fv"].min(-1).values > 0  # (B, N)
        err = torch.linalg.norm(traj - bt["fut"][:, :, None], dim=-1)  # (B, N, K, T)
        ade = err.mean(-1).min(-1).values
        fde = err[..., -1].min(-1).values
        ade_sum += float(ade[full].sum())
        fde_sum += float(fde[full].sum())
        n_full += int(full.sum())
    out = {k: v / max(n_batches, 1) for k, v in tot.items()}
    out["min_ade_m"] = ade_sum / max(n_full, 1)
    out["min_fde_m"] = fde_sum / max(n_full, 1)
    out["agents"] = float(n_full)
    return out


def train(
    data_dir: Path,
    out_dir: Path,
    cfg: TrainConfig | None = None,
    resume: bool = True,
    stop_at: int | None = None,
) -> dict[str, Any]:
    """Train on the shards of ``data_dir``; write checkpoints and ``metrics.jsonl`` to ``out_dir``.

    The schedule is ``cfg.max_steps`` optimiser steps. Every ``cfg.checkpoint_every`` steps, and
    when the run stops early, the whole training state goes to ``out_dir/last.pt``
    (:mod:`prescient.models.train_state`); with ``resume`` a later call continues from it and ends
    with the same weights as a run that was never interrupted.

    Args:
        stop_at: stop after this step (as an interruption would; tests), None: run to the end.

    Returns:
        Summary: best checkpoint path, best validation metrics, steps, whether the schedule
        finished (``complete``), sample counts.

    Raises:
        SimDataError: no or malformed data. TrainStateError: ``last.pt`` of another config or data.
    """
    cfg = cfg or TrainConfig()
    torch.manual_seed(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = list_shards(data_dir)
    train_paths, val_paths = split_runs(paths, cfg.val_fraction, cfg.seed)
    train_set = SimSamples([load_shard(p) for p in train_paths], cfg.n_max)
    val_set = SimSamples([load_shard(p) for p in val_paths], cfg.n_max)
    log.info("%d train samples (%d runs), %d val samples (%d runs)", len(train_set), len(train_paths),
             len(val_set), len(val_paths))  # fmt: skip
    if len(train_set) == 0 or len(val_set) == 0:
        raise SimDataError(f"empty split: {len(train_set)} train, {len(val_set)} val samples")
    model = TrajectoryNet(model_config_for(train_set.meta, cfg.model_size, cfg.n_max, cfg.num_modes))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    identity = {"train_config": _schedule_config(cfg), "train_runs": [p.stem for p in train_paths]}
    state = TrainState.start(cfg.seed, len(train_set))
    last_path = out_dir / "last.pt"
    if resume and last_path.is_file():
        state = TrainState.load(last_path, model, opt, identity)
        log.info("resuming from %s at step %d of %d", last_path, state.step, cfg.max_steps)
    trim_metrics(out_dir / "metrics.jsonl", state.step)
    run = _Run(cfg, model, opt, train_set, val_set, state, out_dir)
    run.meta = {**identity, "data": str(data_dir), "val_runs": [p.stem for p in val_paths],
                "train_samples": len(train_set)}  # fmt: skip
    run.loop(stop_at)
    state.save(last_path, model, opt, identity)
    summary = {
        "best_checkpoint": str(out_dir / "best.pt"),
        "best_val": state.best,
        "best_step": state.best_step,
        "steps": state.step,
        "complete": state.step >= cfg.max_steps,
        "wall_s": round(run.wall_s, 1),
        "params": sum(p.numel() for p in model.parameters()),
        "train_samples": len(train_set),
        "val_samples": len(val_set),
        "train_runs": [p.stem for p in train_paths],
        "val_runs": [p.stem for p in val_paths],
        "train_config": dataclasses.asdict(cfg),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _schedule_config(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that shape the weights (the wall-clock stop does not)."""
    d = dataclasses.asdict(cfg)
    d.pop("minutes")
    d.pop("checkpoint_every")
    return d


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of ``step``: 50-step linear warm-up, cosine decay to 5 % at ``max_steps``."""
    frac = min(step / max(cfg.max_steps, 1), 1.0)
    lr = cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac)))
    return lr * (step + 1) / 50 if step < 50 else lr


class _Run:
    """The step loop of one :func:`train` call (state in :class:`TrainState`)."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: TrajectoryNet,
        opt: torch.optim.Optimizer,
        train_set: SimSamples,
        val_set: SimSamples,
        state: TrainState,
        out_dir: Path,
    ) -> None:
        self.cfg, self.model, self.opt, self.state = cfg, model, opt, state
        self.train_set, self.val_set, self.out_dir = train_set, val_set, out_dir
        n_val = min(cfg.val_max_samples, len(val_set))
        self.val_items = sorted({int(v) for v in np.linspace(0, len(val_set) - 1, n_val).astype(int)})
        self.meta: dict[str, Any] = {}
        self.wall_s = 0.0
        self._losses: list[float] = []

    def loop(self, stop_at: int | None) -> None:
        cfg, st = self.cfg, self.state
        t0 = time.perf_counter()
        deadline = None if cfg.minutes is None else t0 + 60.0 * cfg.minutes
        with (self.out_dir / "metrics.jsonl").open("a") as metrics:
            while st.step < cfg.max_steps:
                if stop_at is not None and st.step >= stop_at:
                    break
                if deadline is not None and time.perf_counter() > deadline:
                    log.warning(
                        "time limit at step %d of %d: resume to finish the schedule", st.step, cfg.max_steps
                    )
                    break
                self._step(metrics, time.perf_counter() - t0)
                if st.step % cfg.val_every == 0 or st.step == cfg.max_steps:
                    self._validate(metrics, time.perf_counter() - t0)
                if st.step % cfg.checkpoint_every == 0:
                    st.save(self.out_dir / "last.pt", self.model, self.opt, self.meta)
        self.wall_s = time.perf_counter() - t0

    def _step(self, metrics: Any, t_s: float) -> None:
        cfg, st = self.cfg, self.state
        items = st.next_items(cfg.batch_size, len(self.train_set))
        route = st.rng.random(len(items)) < cfg.route_plan_fraction
        bt = self.train_set.batch(items, route)
        lr = lr_at(cfg, st.step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.model.train()
        traj, logits, scale = _forward(self.model, bt)
        loss, stats = wta_laplace_loss(traj, logits, scale, bt["fut"], bt["fv"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        st.step += 1
        self._losses.append(float(loss.detach()))
        if st.step % 25 == 0:
            row = {"step": st.step, "t_s": round(t_s, 1), "lr": lr, "loss": float(np.mean(self._losses)),
                   "nll": stats["nll"], "ce": stats["ce"], "min_ade_m": stats["min_ade_m"]}  # fmt: skip
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            log.info("step %d loss %.3f minADE %.2f", st.step, row["loss"], stats["min_ade_m"])
            self._losses = []

    def _validate(self, metrics: Any, t_s: float) -> None:
        st = self.state
        val = validate(self.model, self.val_set, self.val_items, self.cfg.batch_size)
        metrics.write(json.dumps({"step": st.step, "t_s": round(t_s, 1), "val": val}) + "\n")
        metrics.flush()
        log.info("step %d val %s", st.step, json.dumps({k: round(v, 3) for k, v in val.items()}))
        if st.best is None or val["min_ade_m"] < st.best["min_ade_m"]:
            st.best, st.best_step = val, st.step
            save_checkpoint(self.out_dir / "best.pt", self.model, {**self.meta, "step": st.step, "val": val})


def export_best(checkpoint: Path, onnx_path: Path, n_max: int = EXPORT_N_MAX) -> dict[str, Any]:
    """Export a training checkpoint with ``n_max`` agent slots; checks parity with PyTorch.

    Raises:
        RuntimeError: onnxruntime and PyTorch disagree by more than 1e-3.
    """
    trained, meta = load_checkpoint(checkpoint)
    cfg = dataclasses.replace(trained.cfg, n_max=n_max)
    model = TrajectoryNet(cfg)
    model.load_state_dict(trained.state_dict())
    model.eval()
    manifest = export_onnx(model, onnx_path, training_meta=meta, model_id=None)
    diff = onnx_parity(model, onnx_path, n_valid=min(100, n_max))
    if diff > 1e-3:
        raise RuntimeError(f"onnx parity {diff:.2e} above 1e-3 for {onnx_path}")
    log.info("exported %s, parity %.2e", onnx_path, diff)
    manifest["parity_max_abs"] = diff
    return manifest
