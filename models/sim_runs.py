"""Which runs a simulation dataset holds: run specs, cutting settings, seed ranges, the held-out seeds.

A run is a pure function of its :class:`RunSpec` (map, seed, day/night, duration, agents) and
:class:`GenConfig`: its shard has the same bytes whoever generates it and in whichever order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prescient.models.shards import SimDataError
from prescient.sim_sensors.counterfactual import PLAN_KINDS

# Seeds from here on are the held-out evaluation seeds (the shipped model's evaluation uses
# 100-104): never trained, validated or calibrated on. Training data uses seeds 0-99.
HELD_OUT_MIN_SEED = 100


def is_held_out(seed: int) -> bool:
    """Whether ``seed`` belongs to the held-out evaluation seeds (>= :data:`HELD_OUT_MIN_SEED`)."""
    return seed >= HELD_OUT_MIN_SEED


@dataclass(frozen=True)
class RunSpec:
    """One simulated run.

    Attributes:
        scenario: one of :data:`prescient.sim_sensors.SCENARIOS` (the map).
        seed: simulator seed.
        night: darkness on.
        duration_s: simulated seconds.
        n_agents: target agent count.
    """

    scenario: str
    seed: int
    night: bool
    duration_s: float
    n_agents: int

    @property
    def name(self) -> str:
        """Shard stem, e.g. ``intersection_s0007`` (day or night is a function of map and seed)."""
        return f"{self.scenario}_s{self.seed:04d}"


@dataclass(frozen=True)
class GenConfig:
    """How samples are cut from a run.

    Attributes:
        stride_ticks: keep every ``stride_ticks``-th 100 ms tick (decorrelation).
        warmup_s: skip ticks before this sim time (tracks need history).
        match_radius_m: max track-to-ground-truth distance at the tick.
        use_lidar: render LiDAR splats (as onboard).
        branches: counterfactual ego plans per sample (kinds of
            :data:`prescient.sim_sensors.counterfactual.PLAN_KINDS`, in shard branch-index order);
            empty: no branches.
        branch_every: branch every ``branch_every``-th sample (ticks where ``tick %
            (stride_ticks * branch_every) == 0``); the others have no branch applied.
    """

    stride_ticks: int = 10
    warmup_s: float = 2.0
    match_radius_m: float = 2.0
    use_lidar: bool = True
    branches: tuple[str, ...] = PLAN_KINDS
    branch_every: int = 1

    def __post_init__(self) -> None:
        """Reject unknown branch kinds and non-positive strides."""
        bad = [k for k in self.branches if k not in PLAN_KINDS]
        if bad:
            raise SimDataError(f"unknown branch plans {bad}; expected some of {list(PLAN_KINDS)}")
        if self.stride_ticks < 1 or self.branch_every < 1:
            raise SimDataError("stride_ticks and branch_every must be >= 1")

    def as_meta(self) -> dict[str, Any]:
        """JSON-ready settings (stored in every shard; a resumed generation must match them)."""
        d = dataclasses.asdict(self)
        d["branches"] = list(self.branches)
        return d


def parse_seeds(text: str) -> list[int]:
    """``"0-29"`` / ``"0,3,5-7"`` -> sorted unique seeds.

    Raises:
        SimDataError: on a malformed range, naming it.
    """
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError as e:
            raise SimDataError(f"bad seed range {part!r}; expected e.g. 0-29 or 1,4,7") from e
    if not out:
        raise SimDataError(f"no seeds in {text!r}")
    return sorted(out)


def plan_runs(
    scenarios: Sequence[str],
    seeds: Sequence[int],
    duration_s: float,
    n_agents: int,
    night_fraction: float,
) -> list[RunSpec]:
    """The runs to simulate, seed-major; night is drawn per (scenario, seed) from a seeded generator.

    Every (map, seed) pair is one run, by day or by night: a map's index in
    :data:`~prescient.sim_sensors.SCENARIOS` (not its position in ``scenarios``) seeds the draw,
    so a run is the same whichever maps are generated with it.
    """
    from prescient.sim_sensors import SCENARIOS

    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        raise SimDataError(f"unknown scenarios {bad}; expected some of {list(SCENARIOS)}")
    if not 0.0 <= night_fraction <= 1.0:
        raise SimDataError(f"night fraction must be in [0, 1], got {night_fraction}")
    runs = []
    scenarios = list(dict.fromkeys(scenarios))  # a map named twice is one run per seed
    # Seed-major: a partial generation still covers every scenario.
    for seed in seeds:
        for scenario in scenarios:
            s_idx = list(SCENARIOS).index(scenario)
            night = bool(np.random.default_rng([seed, s_idx, 7]).random() < night_fraction)
            runs.append(RunSpec(scenario, int(seed), night, float(duration_s), int(n_agents)))
    return runs
