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
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prescient.models.export import export_onnx, load_checkpoint, onnx_parity, save_checkpoint
from prescient.models.losses import accel_match_loss, counterfactual_pair_loss
from prescient.models.net import TrajectoryNet, wta_laplace_loss
from prescient.models.shard_stream import LazyShard, ShardCache, block_permutation
from prescient.models.sim_data import (
    SimDataError,
    list_shards,
    load_shard,
)
from prescient.models.sim_samples import SimSamples, choose_pairs
from prescient.models.train_state import TrainState, trim_metrics
from prescient.models.train_validate import _INPUTS, _forward, freeze_for, is_better, set_train_mode, validate
from prescient.service.model_io.config import ModelConfig
from prescient.service.model_io.manifest import sha256_file

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
        shards_in_memory: 0 loads every shard (small data); N > 0 reads shards on demand, at most
            N in memory, and visits samples in blocks of N/2 shards (:mod:`prescient.models.shard_stream`).
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
        decoder / plan_attention / velocity_step: :class:`~prescient.service.model_io.config.ModelConfig`
            options (``"basis"``: smooth acceleration decoder; plan tokens each agent attends to;
            ``basis_velocity_step``: whether a mode may jump off the agent's velocity at t=0).
        mixture_weight: weight of the full-mixture NLL beside the WTA loss (0: WTA only).
        soft_target_m: mode-classification target ``softmax(-ADE_k / soft_target_m)`` instead of
            the winning mode (0: the winner; :func:`prescient.models.net.wta_laplace_loss`).
        device: ``"cpu"`` or ``"cuda"``: where the model trains and batches are made. Not part of
            the schedule: a state saved on one device resumes on the other (weights then match
            to float tolerance, not bit for bit).
        pair_fraction: share of steps trained on counterfactual pairs (the same scenes under two
            ego plans, shards with branches): both branches' WTA losses plus ``shift_weight`` times
            the error of the predicted shift between them (:mod:`prescient.models.losses`).
        moved_weight: weight, in the shift loss, of agents the plan moves (true shift > 0.5 m at
            8 s) against those it does not; they are about 2 % of agents, so at 1 the term mostly
            teaches "do not move" (:func:`prescient.models.losses.counterfactual_shift_loss`).
        route_pair_fraction: on pair steps, the share of scenes that have an alternative-route
            branch trained on exactly (actual future, route): that plan moves few agents (a
            junction's), so uniform pairs teach its reaction little. 0: pairs drawn uniformly.
        accel_weight: weight of :func:`prescient.models.losses.accel_match_loss` (the closest
            mode's accelerations against the truth's, m/s^2); 0: off.
        init_from: a training checkpoint (``best.pt``) whose weights the run starts from (a
            fine-tune; its model options must match, except that a model with ``mode_scorer``
            may start from one without), None: seeded random weights.
        mode_scorer: :class:`~prescient.service.model_io.config.ModelConfig` ``mode_scorer``.
        train_only: ``"scorer"``: train the mode scorer alone (needs ``init_from``); every
            other weight and BatchNorm statistic stays as loaded, and the checkpoint kept is the
            one with the lowest validation mode cross-entropy. None: train everything.
    """

    seed: int = 0
    max_steps: int = 420
    minutes: float | None = None
    checkpoint_every: int = 50
    shards_in_memory: int = 0
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
    decoder: str = "direct"
    plan_attention: bool = False
    velocity_step: bool = True
    mixture_weight: float = 0.0
    soft_target_m: float = 0.0
    pair_fraction: float = 0.0
    shift_weight: float = 1.0
    moved_weight: float = 1.0
    accel_weight: float = 0.0
    route_pair_fraction: float = 0.0
    init_from: str | None = None
    mode_scorer: bool = False
    train_only: str | None = None
    device: str = "cpu"


def model_config_for(
    meta: dict[str, Any], size: str, n_max: int, num_modes: int = 6, **options: Any
) -> ModelConfig:
    """The :class:`ModelConfig` for shards with ``meta`` (raster shape, spec, channel names);
    ``options``: further ModelConfig fields (``decoder``, ``plan_attention``)."""
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
        **options,
    )


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
    if cfg.init_from is not None and not Path(cfg.init_from).is_file():
        raise SimDataError(f"--init-from {cfg.init_from}: no such checkpoint")  # before loading data
    if cfg.train_only is not None and cfg.init_from is None:
        raise SimDataError(f"--train-only {cfg.train_only} needs --init-from: the rest of the model stays as loaded")
    torch.manual_seed(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = list_shards(data_dir)
    train_paths, val_paths = split_runs(paths, cfg.val_fraction, cfg.seed)
    train_set = SimSamples(_open_shards(train_paths, cfg.shards_in_memory), cfg.n_max, device=cfg.device)
    val_set = SimSamples(_open_shards(val_paths, cfg.shards_in_memory), cfg.n_max, device=cfg.device)
    log.info("%d train samples (%d runs), %d val samples (%d runs)", len(train_set), len(train_paths),
             len(val_set), len(val_paths))  # fmt: skip
    if len(train_set) == 0 or len(val_set) == 0:
        raise SimDataError(f"empty split: {len(train_set)} train, {len(val_set)} val samples")
    options = {
        "decoder": cfg.decoder, "plan_attention": cfg.plan_attention, "basis_velocity_step": cfg.velocity_step,
        "mode_scorer": cfg.mode_scorer,
    }  # fmt: skip
    model = TrajectoryNet(
        model_config_for(train_set.meta, cfg.model_size, cfg.n_max, cfg.num_modes, **options)
    )
    if cfg.init_from is not None:
        _init_weights(model, Path(cfg.init_from))
    model = model.to(cfg.device)
    try:
        params = freeze_for(model, cfg.train_only)
    except ValueError as e:
        raise SimDataError(str(e)) from e
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    identity = {"train_config": _schedule_config(cfg), "train_runs": [p.stem for p in train_paths]}
    state = TrainState.start(cfg.seed, _sample_order(train_set, cfg.shards_in_memory))
    last_path = out_dir / "last.pt"
    if resume and last_path.is_file():
        state = TrainState.load(last_path, model, opt, identity)
        log.info("resuming from %s at step %d of %d", last_path, state.step, cfg.max_steps)
    trim_metrics(out_dir / "metrics.jsonl", state.step)
    run = _Run(cfg, model, opt, train_set, val_set, state, out_dir)
    run.meta = {**identity, "data": str(data_dir), "val_runs": [p.stem for p in val_paths],
                "train_samples": len(train_set)}  # fmt: skip
    if cfg.init_from is not None:
        run.meta["init_from_sha256"] = sha256_file(Path(cfg.init_from))
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


def _init_weights(model: TrajectoryNet, checkpoint: Path) -> None:
    """Load a checkpoint's weights into ``model`` (same options; agent slots and the basis
    decoder's velocity step may differ: the weights have the same shapes; a model with the mode
    scorer may start from one without, its scorer then starts at zero output).

    Raises:
        SimDataError: its model differs in anything else.
    """
    trained, _ = load_checkpoint(checkpoint)
    ours, theirs = (dataclasses.asdict(c) for c in (model.cfg, trained.cfg))
    keys = ["n_max", "basis_velocity_step"] + (["mode_scorer"] if ours["mode_scorer"] else [])
    for key in keys:
        theirs[key] = ours[key]
    if theirs != ours:
        diff = ", ".join(sorted(k for k in ours if theirs[k] != ours[k]))
        raise SimDataError(f"--init-from {checkpoint}: model differs in {diff}")
    missing, unexpected = model.load_state_dict(trained.state_dict(), strict=False)
    new = [k for k in missing if not (trained.cfg.mode_scorer is False and k.startswith("scorer."))]
    if new or unexpected:
        raise SimDataError(f"--init-from {checkpoint}: weights missing {new[:3]}, unexpected {unexpected[:3]}")


def _open_shards(paths: list[Path], shards_in_memory: int) -> list[Any]:
    """All shards loaded (0), or lazily with at most ``shards_in_memory`` in memory at once."""
    if shards_in_memory <= 0:
        # zlib releases the GIL: threads read a few hundred shards several times faster.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            return list(pool.map(load_shard, paths))
    cache = ShardCache(shards_in_memory)
    return [LazyShard(p, cache) for p in paths]


def _sample_order(data: SimSamples, shards_in_memory: int) -> Callable[[np.random.Generator], np.ndarray]:
    """Each pass's sample order: a plain permutation (all in memory), or shard blocks of half
    the cache (:func:`~prescient.models.shard_stream.block_permutation`)."""
    if shards_in_memory <= 0:
        return lambda rng: rng.permutation(len(data))
    sizes = [s.num_samples for s in data.shards]
    block = max(1, shards_in_memory // 2)
    return lambda rng: block_permutation(rng, sizes, block)


def _schedule_config(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that shape the weights (the wall-clock stop does not)."""
    d = dataclasses.asdict(cfg)
    d.pop("minutes")
    d.pop("checkpoint_every")
    d.pop("device")
    # Settings added later leave the identity of runs that do not use them unchanged, so their
    # saved states still resume.
    if d["moved_weight"] == 1.0:
        d.pop("moved_weight")
    for key in ("accel_weight", "route_pair_fraction"):
        if d[key] == 0.0:
            d.pop(key)
    if d["velocity_step"]:
        d.pop("velocity_step")
    for key in ("mode_scorer", "train_only"):
        if not d[key]:
            d.pop(key)
    if d["init_from"] is None:
        d.pop("init_from")
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
        self.order = _sample_order(train_set, cfg.shards_in_memory)
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
        items = st.next_items(cfg.batch_size, self.order)
        lr = lr_at(cfg, st.step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        set_train_mode(self.model, cfg.train_only)
        # The draw happens only when pairs are asked for: the default run's random stream (and
        # so its weights) stays what it was.
        if cfg.pair_fraction > 0 and st.rng.random() < cfg.pair_fraction:
            loss, stats = self._pair_loss(items)
        else:
            route = st.rng.random(len(items)) < cfg.route_plan_fraction
            bt = self.train_set.batch(items, route)
            traj, logits, scale = _forward(self.model, bt)
            loss, stats = wta_laplace_loss(
                traj, logits, scale, bt["fut"], bt["fv"], mixture_weight=cfg.mixture_weight,
                soft_target_m=cfg.soft_target_m,
            )  # fmt: skip
            loss = self._add_accel(loss, stats, traj, bt["fut"], bt["fv"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        st.step += 1
        self._losses.append(float(loss.detach()))
        if st.step % 25 == 0:
            row = {"step": st.step, "t_s": round(t_s, 1), "lr": lr, "loss": float(np.mean(self._losses)),
                   **{k: v for k, v in stats.items() if isinstance(v, float)}}  # fmt: skip
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            log.info(
                "step %d loss %.3f minADE %.2f", st.step, row["loss"], stats.get("min_ade_m", float("nan"))
            )
            self._losses = []

    def _pair_loss(self, items: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        """One step on counterfactual pairs: per scene two of its plans (seeded; the actual
        future and one branch when it has a single one, the same plan twice when it has none)."""
        cfg, rng = self.cfg, self.state.rng
        route = self.train_set.branch_index("route") if cfg.route_pair_fraction > 0 else -1
        a, b = choose_pairs(self.train_set.available(items), rng, route, cfg.route_pair_fraction)
        bt = self.train_set.batch(items, branch=a, pair_branch=b)
        both = {k: torch.cat([bt[k], bt[k + "_b"] if k + "_b" in bt else bt[k]]) for k in _INPUTS}
        traj, logits, scale = _forward(self.model, both)
        n = len(items)
        loss, stats = counterfactual_pair_loss(
            (traj[:n], logits[:n], scale[:n]), (traj[n:], logits[n:], scale[n:]),
            bt["fut"], bt["fv"], bt["fut_b"], bt["fv_b"],
            shift_weight=cfg.shift_weight, mixture_weight=cfg.mixture_weight,
            soft_target_m=cfg.soft_target_m, shift_kwargs={"moved_weight": cfg.moved_weight},
        )  # fmt: skip
        loss = self._add_accel(
            loss, stats, traj, torch.cat([bt["fut"], bt["fut_b"]]), torch.cat([bt["fv"], bt["fv_b"]])
        )
        return loss, stats

    def _add_accel(
        self,
        loss: torch.Tensor,
        stats: dict[str, Any],
        traj: torch.Tensor,
        fut: torch.Tensor,
        fv: torch.Tensor,
    ) -> torch.Tensor:
        """``loss`` plus the acceleration term when ``accel_weight`` asks for it (logged in ``stats``)."""
        if self.cfg.accel_weight <= 0:
            return loss
        accel = accel_match_loss(traj, fut, fv, self.model.cfg.dt_s)
        stats["accel_err_mps2"] = float(accel.detach())
        return loss + self.cfg.accel_weight * accel

    def _validate(self, metrics: Any, t_s: float) -> None:
        st = self.state
        val = validate(self.model, self.val_set, self.val_items, self.cfg.batch_size)
        metrics.write(json.dumps({"step": st.step, "t_s": round(t_s, 1), "val": val}) + "\n")
        metrics.flush()
        log.info("step %d val %s", st.step, json.dumps({k: round(v, 3) for k, v in val.items()}))
        if is_better(val, st.best, self.cfg.train_only):
            st.best, st.best_step = val, st.step
            save_checkpoint(self.out_dir / "best.pt", self.model, {**self.meta, "step": st.step, "val": val})


def export_best(checkpoint: Path, onnx_path: Path, n_max: int = EXPORT_N_MAX) -> dict[str, Any]:
    """Export a training checkpoint with at most ``n_max`` agents per pass (a symbolic agent axis);
    checks parity with PyTorch, padded and on the valid agents only.

    Raises:
        RuntimeError: onnxruntime and PyTorch disagree by more than 1e-3.
    """
    trained, meta = load_checkpoint(checkpoint)
    cfg = dataclasses.replace(trained.cfg, n_max=n_max)
    model = TrajectoryNet(cfg)
    model.load_state_dict(trained.state_dict())
    model.eval()
    manifest = export_onnx(model, onnx_path, training_meta=meta, model_id=None, dynamic_agents=True)
    diff = onnx_parity(model, onnx_path, n_valid=min(100, n_max))
    if diff > 1e-3:
        raise RuntimeError(f"onnx parity {diff:.2e} above 1e-3 for {onnx_path}")
    log.info("exported %s, parity %.2e", onnx_path, diff)
    manifest["parity_max_abs"] = diff
    return manifest
