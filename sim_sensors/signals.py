"""Traffic signals as the behaviour kernels see them: per-lane light state and crossing walk time."""

from __future__ import annotations

import numpy as np

from prescient.sim_sensors.layout import KIND_CROSS
from prescient.sim_sensors.maps import MapData

_UNSIGNALISED_ELAPSED_S = 1e9  # crossings without a signal: "the walk window opened long ago"


class SignalClock:
    """Fixed-time signal plan of a map, evaluated per step into reused buffers.

    Args:
        md: the map.

    Attributes:
        light_lanes: (K,) int64 road lanes controlled by a signal group.
        lane_light: (L,) uint8 LightState per lane (0 no signal), as of the last :meth:`update`.
        cross_elapsed: (L,) float64 seconds since a crossing's walk window opened, -1 outside it,
            1e9 for unsignalised crossings, as of the last :meth:`update`.
    """

    def __init__(self, md: MapData) -> None:
        """Precompute the lanes and plans the per-step evaluation loops over."""
        self.md = md
        self.light_lanes = np.nonzero(md.group[: md.n_road] >= 0)[0]
        self._plans = [tuple(float(v) for v in p) for p in md.group_plan_s]
        self._offsets = [float(o) for o in md.group_offset_s]
        self._light_pairs = [(int(lane), int(md.group[lane])) for lane in self.light_lanes]
        self._crossings = [int(c) for c in np.nonzero(md.ped_cycle_s > 0)[0]]
        self.lane_light = np.zeros(md.n_lanes, np.uint8)
        self.cross_elapsed = np.full(md.n_lanes, -1.0)
        self.cross_elapsed[np.nonzero((md.kind == KIND_CROSS) & (md.ped_cycle_s <= 0))[0]] = (
            _UNSIGNALISED_ELAPSED_S
        )

    def update(self, t_s: float) -> None:
        """Set ``lane_light`` and ``cross_elapsed`` (in place) to their values at sim time ``t_s``.

        Small Python loops: cheaper than numpy for a handful of groups.
        """
        md = self.md
        lane_light = self.lane_light
        if len(self._plans):
            states = [self._group_state(g, t_s) for g in range(len(self._plans))]
            for lane, g in self._light_pairs:
                lane_light[lane] = states[g]
        cross = self.cross_elapsed
        for lane in self._crossings:
            phase = t_s % md.ped_cycle_s[lane]
            start = md.ped_start_s[lane]
            cross[lane] = phase - start if start <= phase < md.ped_end_s[lane] else -1.0

    @property
    def offsets_s(self) -> tuple[float, ...]:
        """Each signal group's plan offset (s): its cycle starts green at ``offset + k * cycle``."""
        return tuple(self._offsets)

    def set_offsets(self, offsets_s: tuple[float, ...]) -> None:
        """Replace every group's offset (s) (see :attr:`offsets_s`)."""
        if len(offsets_s) != len(self._offsets):
            raise ValueError(f"{len(offsets_s)} offsets for {len(self._offsets)} signal groups")
        self._offsets = [float(o) for o in offsets_s]

    def redraw_phase(self, t_s: float, rng: np.random.Generator) -> None:
        """Each group keeps its colour at ``t_s``; how long it has shown that colour is drawn anew
        (uniform over the colour's window): what a road user who just arrived knows of the light."""
        for g, (green, yellow, red) in enumerate(self._plans):
            cycle = green + yellow + red
            phase = (t_s - self._offsets[g]) % cycle
            lo, hi = (0.0, green) if phase < green else ((green, green + yellow) if phase < green + yellow else (green + yellow, cycle))
            self._offsets[g] += phase - float(rng.uniform(lo, hi))

    def _group_state(self, g: int, t_s: float) -> int:
        """LightState of group ``g`` at ``t_s``: GREEN, YELLOW, then RED."""
        green, yellow, red = self._plans[g]
        phase = (t_s - self._offsets[g]) % (green + yellow + red)
        return 3 if phase < green else (2 if phase < green + yellow else 1)
