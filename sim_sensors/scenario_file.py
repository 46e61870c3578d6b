"""Scene files: agents placed on a map, written by ``prescient scenarios generate``.

A scene file is JSON (never pickle), one object::

    {"format": "prescient.scenes", "version": 1,
     "scenes": [{"map": "intersection",
                 "ego_pose": [x_m, y_m, yaw_rad],          # world frame, ego rear axle
                 "ego_speed_mps": 8.0,
                 "agents": [{"class": "bus", "x_m": .., "y_m": .., "yaw_rad": ..,
                             "length_m": .., "width_m": .., "speed_mps": ..,
                             "past_xy_m": [x, y], "future_xy_m": [x, y],   # -2 s / +2 s, optional
                             "score": 0.93, "pinned": true}],
                 "meta": {...}}]}

Frames and units: every position is world frame (x east, y north), metres; yaw is radians
counter-clockwise from +x; ``(x_m, y_m)`` is the box centre (the ego pose is its rear axle, as
in :class:`prescient.bus.messages.EgoState`). ``class`` is a lower-case :class:`prescient.bus.messages.AgentClass`
name. ``past_xy_m`` / ``future_xy_m`` are the agent's box centre 2 s before / after the scene
time (world frame); they are informative (the simulator replans from its behaviour models).

A path may carry a scene index, ``scenes.json#3`` (default 0): see :func:`load_scene`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prescient.bus.messages import AgentClass

FORMAT = "prescient.scenes"
# When changing the layout: bump this number.
FORMAT_VERSION = 1
TRAJ_DT_S = 2.0  # past / future sample offset of ``past_xy_m`` / ``future_xy_m``

CLASS_BY_NAME = {c.name.lower(): c for c in AgentClass if c != AgentClass.UNKNOWN}


class ScenarioFileError(ValueError):
    """A scene file is unreadable or malformed; the message names the file, scene and field."""


@dataclass
class Scene:
    """One scene: N agents around an ego on a named map (struct of arrays, world frame).

    Attributes:
        map_name: one of :data:`prescient.sim_sensors.maps.SCENARIOS`.
        ego_pose: (3,) float64 world ``[x_m, y_m, yaw_rad]`` of the ego rear axle.
        ego_speed_mps: ego speed.
        cls: (N,) int64 AgentClass values (1..6).
        xy_m: (N, 2) float64 world box centres.
        yaw_rad: (N,) float64 world headings.
        size_lw_m: (N, 2) float64 box length, width.
        speed_mps: (N,) float64 speed along the heading.
        past_xy_m / future_xy_m: (N, 2) float64 world box centres 2 s before / after (NaN if
            unknown).
        score: (N,) float64 detection confidence (1 for simulated scenes).
        pinned: (N,) bool: the agent answers a token of the request.
        meta: free-form JSON-serialisable details (seed, tokens, timing).
    """

    map_name: str
    ego_pose: np.ndarray
    ego_speed_mps: float
    cls: np.ndarray
    xy_m: np.ndarray
    yaw_rad: np.ndarray
    size_lw_m: np.ndarray
    speed_mps: np.ndarray
    past_xy_m: np.ndarray
    future_xy_m: np.ndarray
    score: np.ndarray
    pinned: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_agents(self) -> int:
        """Number of agents (ego excluded)."""
        return len(self.cls)

    @staticmethod
    def empty(map_name: str, ego_pose: np.ndarray, ego_speed_mps: float = 0.0) -> Scene:
        """A scene with no agents."""
        return Scene.from_arrays(map_name, ego_pose, ego_speed_mps, np.zeros(0, np.int64), np.zeros((0, 2)),
                                 np.zeros(0), np.zeros((0, 2)), np.zeros(0))  # fmt: skip

    @staticmethod
    def from_arrays(
        map_name: str,
        ego_pose: np.ndarray,
        ego_speed_mps: float,
        cls: np.ndarray,
        xy_m: np.ndarray,
        yaw_rad: np.ndarray,
        size_lw_m: np.ndarray,
        speed_mps: np.ndarray,
        past_xy_m: np.ndarray | None = None,
        future_xy_m: np.ndarray | None = None,
        score: np.ndarray | None = None,
        pinned: np.ndarray | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Scene:
        """Build and validate a scene from arrays (optional columns default to NaN / 1 / False)."""
        n = len(cls)
        nan2 = np.full((n, 2), np.nan)
        s = Scene(
            map_name=str(map_name),
            ego_pose=np.asarray(ego_pose, np.float64).reshape(3),
            ego_speed_mps=float(ego_speed_mps),
            cls=np.asarray(cls, np.int64).reshape(n),
            xy_m=np.asarray(xy_m, np.float64).reshape(n, 2),
            yaw_rad=np.asarray(yaw_rad, np.float64).reshape(n),
            size_lw_m=np.asarray(size_lw_m, np.float64).reshape(n, 2),
            speed_mps=np.asarray(speed_mps, np.float64).reshape(n),
            past_xy_m=nan2.copy() if past_xy_m is None else np.asarray(past_xy_m, np.float64).reshape(n, 2),
            future_xy_m=nan2.copy()
            if future_xy_m is None
            else np.asarray(future_xy_m, np.float64).reshape(n, 2),
            score=np.ones(n) if score is None else np.asarray(score, np.float64).reshape(n),
            pinned=np.zeros(n, bool) if pinned is None else np.asarray(pinned, bool).reshape(n),
            meta=dict(meta or {}),
        )
        s.validate()
        return s

    def validate(self, where: str = "scene") -> None:
        """Check shapes, classes and finiteness.

        Raises:
            ScenarioFileError: naming ``where`` and the offending field.
        """
        from prescient.sim_sensors.maps import SCENARIOS

        if self.map_name not in SCENARIOS:
            raise ScenarioFileError(
                f"{where}: unknown map {self.map_name!r}; expected one of {', '.join(SCENARIOS)}"
            )
        if not np.all(np.isfinite(self.ego_pose)):
            raise ScenarioFileError(f"{where}: ego_pose must be finite, got {self.ego_pose.tolist()}")
        bad = ~np.isin(self.cls, [int(c) for c in CLASS_BY_NAME.values()])
        if bad.any():
            raise ScenarioFileError(
                f"{where}: agent {int(np.argmax(bad))}: unknown class id {int(self.cls[bad][0])}"
            )
        for name in ("xy_m", "yaw_rad", "size_lw_m", "speed_mps"):
            arr = getattr(self, name)
            fin = (
                np.isfinite(arr).reshape(len(self.cls), -1).all(axis=1) if len(self.cls) else np.ones(0, bool)
            )
            if not fin.all():
                raise ScenarioFileError(f"{where}: agent {int(np.argmin(fin))}: {name} is not finite")
        small = (self.size_lw_m <= 0.0).any(axis=1)
        if small.any():
            raise ScenarioFileError(f"{where}: agent {int(np.argmax(small))}: size_lw_m must be > 0")

    def to_ego_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """Agent centres and headings in the ego frame: ((N, 2) m, (N,) rad in [-pi, pi))."""
        x, y, yaw = self.ego_pose
        c, s = math.cos(yaw), math.sin(yaw)
        d = self.xy_m - np.array([x, y])
        xy = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)
        return xy, wrap_rad(self.yaw_rad - yaw)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this scene (see the module docstring)."""
        agents = []
        for i in range(self.n_agents):
            a: dict[str, Any] = {
                "class": AgentClass(int(self.cls[i])).name.lower(),
                "x_m": round(float(self.xy_m[i, 0]), 3),
                "y_m": round(float(self.xy_m[i, 1]), 3),
                "yaw_rad": round(float(self.yaw_rad[i]), 4),
                "length_m": round(float(self.size_lw_m[i, 0]), 3),
                "width_m": round(float(self.size_lw_m[i, 1]), 3),
                "speed_mps": round(float(self.speed_mps[i]), 3),
                "score": round(float(self.score[i]), 4),
                "pinned": bool(self.pinned[i]),
            }
            for key, arr in (("past_xy_m", self.past_xy_m), ("future_xy_m", self.future_xy_m)):
                if np.all(np.isfinite(arr[i])):
                    a[key] = [round(float(arr[i, 0]), 3), round(float(arr[i, 1]), 3)]
            agents.append(a)
        return {
            "map": self.map_name,
            "ego_pose": [round(float(v), 4) for v in self.ego_pose],
            "ego_speed_mps": round(self.ego_speed_mps, 3),
            "agents": agents,
            "meta": self.meta,
        }

    @staticmethod
    def from_json(obj: Any, where: str = "scene") -> Scene:
        """Parse one scene object.

        Raises:
            ScenarioFileError: naming ``where`` and the missing or malformed field.
        """
        if not isinstance(obj, dict):
            raise ScenarioFileError(f"{where}: expected an object, got {type(obj).__name__}")
        try:
            agents = obj.get("agents", [])
            if not isinstance(agents, list):
                raise ScenarioFileError(f"{where}: 'agents' must be a list")
            n = len(agents)
            cls = np.zeros(n, np.int64)
            cols = np.full((n, 6), np.nan)
            past, fut = np.full((n, 2), np.nan), np.full((n, 2), np.nan)
            score, pinned = np.ones(n), np.zeros(n, bool)
            for i, a in enumerate(agents):
                if not isinstance(a, dict):
                    raise ScenarioFileError(f"{where}: agent {i}: expected an object")
                name = str(a.get("class", "")).lower()
                if name not in CLASS_BY_NAME:
                    raise ScenarioFileError(
                        f"{where}: agent {i}: unknown class {a.get('class')!r}; expected one of "
                        f"{', '.join(CLASS_BY_NAME)}"
                    )
                cls[i] = int(CLASS_BY_NAME[name])
                for j, key in enumerate(("x_m", "y_m", "yaw_rad", "length_m", "width_m", "speed_mps")):
                    if key not in a:
                        raise ScenarioFileError(f"{where}: agent {i}: missing {key!r}")
                    cols[i, j] = float(a[key])
                if "past_xy_m" in a:
                    past[i] = np.asarray(a["past_xy_m"], np.float64).reshape(2)
                if "future_xy_m" in a:
                    fut[i] = np.asarray(a["future_xy_m"], np.float64).reshape(2)
                score[i] = float(a.get("score", 1.0))
                pinned[i] = bool(a.get("pinned", False))
            if "map" not in obj or "ego_pose" not in obj:
                raise ScenarioFileError(f"{where}: missing 'map' or 'ego_pose'")
            return Scene.from_arrays(
                obj["map"], np.asarray(obj["ego_pose"], np.float64), float(obj.get("ego_speed_mps", 0.0)),
                cls, cols[:, 0:2], cols[:, 2], cols[:, 3:5], cols[:, 5], past, fut, score, pinned,
                obj.get("meta", {}),
            )  # fmt: skip
        except ScenarioFileError as e:
            if str(e).startswith(where):
                raise
            raise ScenarioFileError(f"{where}: {e}") from e
        except (TypeError, ValueError) as e:
            raise ScenarioFileError(f"{where}: {e}") from e


def wrap_rad(a: np.ndarray | float) -> np.ndarray:
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2.0 * np.pi) - np.pi


def save_scenes(path: str | Path, scenes: list[Scene], meta: dict[str, Any] | None = None) -> Path:
    """Write ``scenes`` to a JSON scene file; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "meta": meta or {},
        "scenes": [s.to_json() for s in scenes],
    }
    p.write_text(json.dumps(doc, separators=(",", ":")))
    return p


def load_scenes(path: str | Path) -> list[Scene]:
    """Read every scene of a scene file.

    Raises:
        ScenarioFileError: unreadable file, wrong format / version, or a malformed scene.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except OSError as e:
        raise ScenarioFileError(f"{p}: cannot read: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise ScenarioFileError(f"{p}: not JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ScenarioFileError(f"{p}: not a scene file (expected format {FORMAT!r})")
    if doc.get("version") != FORMAT_VERSION:
        raise ScenarioFileError(
            f"{p}: version {doc.get('version')!r} unsupported (expected {FORMAT_VERSION})"
        )
    scenes = doc.get("scenes")
    if not isinstance(scenes, list):
        raise ScenarioFileError(f"{p}: 'scenes' must be a list")
    return [Scene.from_json(s, where=f"{p} scene {i}") for i, s in enumerate(scenes)]


def load_scene(spec: str | Path) -> Scene:
    """Read one scene: ``FILE`` (scene 0) or ``FILE#INDEX``.

    Raises:
        ScenarioFileError: as :func:`load_scenes`, or an index that is not an integer or out of range.
    """
    text = str(spec)
    index = 0
    if "#" in text:
        text, _, idx = text.rpartition("#")
        try:
            index = int(idx)
        except ValueError as e:
            raise ScenarioFileError(f"{spec}: scene index {idx!r} is not an integer") from e
    scenes = load_scenes(text)
    if not -len(scenes) <= index < len(scenes):
        raise ScenarioFileError(f"{spec}: scene index {index} out of range (file has {len(scenes)} scenes)")
    return scenes[index]


# ----------------------------------------------------------------------------------------------
# Placing a scene on the simulator's lane graph.
# ----------------------------------------------------------------------------------------------
MAX_SNAP_DIST_M = 5.0  # agents farther than this from any lane of their kind are dropped
MAX_SNAP_DYAW_RAD = 1.0  # ... or heading more than this off every nearby lane (vehicles, cyclists)
_HEADING_COST_M_PER_RAD = 4.0


@dataclass
class Placement:
    """Where each agent of a scene starts in the simulator (struct of arrays, world frame).

    Attributes:
        index: (M,) int64 row of the scene agent.
        cls: (M,) int64 AgentClass.
        lane: (M,) int64 lane index (-1 for animals, which roam freely).
        s_m: (M,) float64 arc length on the lane.
        next_lane: (M,) int64 successor chosen from the agent's +2 s centre, -1 = let the
            simulator choose.
        xy_m: (M, 2) float64 snapped centres; yaw_rad: (M,) float64 snapped headings.
        speed_mps: (M,) float64.
        size_lw_m: (M, 2) float64.
        dropped: ``(index, reason)`` of agents that could not be placed.
    """

    index: np.ndarray
    cls: np.ndarray
    lane: np.ndarray
    s_m: np.ndarray
    next_lane: np.ndarray
    xy_m: np.ndarray
    yaw_rad: np.ndarray
    speed_mps: np.ndarray
    size_lw_m: np.ndarray
    dropped: list[tuple[int, str]] = field(default_factory=list)


def _segments(md: Any, lanes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Segments of ``lanes``: start (S, 2), vector (S, 2), lane (S,), start arc length (S,), length (S,)."""
    a_list, v_list, l_list, s_list = [], [], [], []
    for lane in lanes:
        p = md.pts[md.off[lane] : md.off[lane + 1]]
        a_list.append(p[:-1])
        v_list.append(p[1:] - p[:-1])
        l_list.append(np.full(len(p) - 1, lane))
        s_list.append(md.cum_s[md.off[lane] : md.off[lane + 1] - 1])
    a, v = np.concatenate(a_list), np.concatenate(v_list)
    return a, v, np.concatenate(l_list), np.concatenate(s_list), np.linalg.norm(v, axis=1)


def snap_to_lane(
    md: Any, lanes: np.ndarray, xy: np.ndarray, yaw: float | None
) -> tuple[int, float, float, float]:
    """Best lane for a pose: minimises distance + 4 m/rad x heading error (heading ignored if None).

    Returns:
        (lane, s_m, distance_m, heading_error_rad); lane -1 when ``lanes`` is empty.
    """
    if len(lanes) == 0:
        return -1, 0.0, math.inf, math.inf
    a, v, lane_of, s0, seg_len = _segments(md, lanes)
    t = np.clip(((xy - a) * v).sum(1) / np.maximum(seg_len**2, 1e-12), 0.0, 1.0)
    d = np.linalg.norm(a + t[:, None] * v - xy, axis=1)
    dyaw = np.zeros(len(a)) if yaw is None else np.abs(wrap_rad(np.arctan2(v[:, 1], v[:, 0]) - yaw))
    j = int(np.argmin(d + _HEADING_COST_M_PER_RAD * dyaw))
    return int(lane_of[j]), float(s0[j] + t[j] * seg_len[j]), float(d[j]), float(dyaw[j])


def place_scene(scene: Scene, md: Any) -> Placement:
    """Snap every agent of ``scene`` onto the simulator's lane graph ``md`` (a ``MapData``).

    Rules (the simulator's behaviour models then drive them):
      * car, truck, bus: the vehicle lane (incl. intersection connectors) minimising
        distance + 4 m/rad x heading error. When the agent's +2 s centre is known and lies past
        the lane end, the successor passing closest to it is taken (a turn is kept a turn);
        otherwise the simulator picks the successor as usual.
      * cyclist: bike lanes (right-most vehicle lanes on maps without any), same rule.
      * pedestrian: sidewalk walk lanes and crossings, same rule (each walk lane has a twin in
        the other direction, so the heading picks the walking direction).
      * animal: not snapped; it roams around its scene position (its "home").
    Agents farther than ``MAX_SNAP_DIST_M`` from every lane of their kind, or (vehicles,
    cyclists) more than ``MAX_SNAP_DYAW_RAD`` off its heading, are dropped with a reason.
    """
    from prescient.sim_sensors.maps import KIND_BIKE, KIND_CROSS, KIND_VEHICLE, KIND_WALK

    road = np.arange(md.n_road)
    veh = road[md.kind[: md.n_road] == KIND_VEHICLE]
    bike = road[md.kind[: md.n_road] == KIND_BIKE]
    if len(bike) == 0:
        bike = veh[md.right_nb[veh] < 0]
    walk = np.nonzero((md.kind == KIND_WALK) | (md.kind == KIND_CROSS))[0]
    pools = {int(AgentClass.CAR): veh, int(AgentClass.TRUCK): veh, int(AgentClass.BUS): veh,
             int(AgentClass.CYCLIST): bike, int(AgentClass.PEDESTRIAN): walk}  # fmt: skip
    rows: list[tuple] = []
    dropped: list[tuple[int, str]] = []
    for i in range(scene.n_agents):
        c = int(scene.cls[i])
        xy = scene.xy_m[i]
        if c == int(AgentClass.ANIMAL):
            rows.append((i, c, -1, 0.0, -1, xy[0], xy[1], scene.yaw_rad[i]))
            continue
        lane, s, dist, dyaw = snap_to_lane(md, pools[c], xy, float(scene.yaw_rad[i]))
        if dist > MAX_SNAP_DIST_M:
            dropped.append((i, f"{dist:.1f} m from the nearest lane of its kind"))
            continue
        if c != int(AgentClass.PEDESTRIAN) and dyaw > MAX_SNAP_DYAW_RAD:
            dropped.append((i, f"heading {dyaw:.2f} rad off the nearest lane"))
            continue
        nxt = -1
        succ = md.succ[md.succ_off[lane] : md.succ_off[lane + 1]]
        fut = scene.future_xy_m[i]
        if len(succ) > 1 and np.all(np.isfinite(fut)):
            _, s_fut, _, _ = snap_to_lane(md, np.array([lane]), fut, None)
            if s_fut >= md.length[lane] - 2.0:  # heading past the lane end within 2 s: pick the branch
                dists = []
                for q in succ:
                    a, b = md.off[q], md.off[q + 1]
                    pts = md.pts[a:b][md.cum_s[a:b] >= min(2.0, md.length[q])]  # skip the shared start
                    dists.append(np.min(np.linalg.norm(pts - fut, axis=1)))
                nxt = int(succ[int(np.argmin(dists))])
        p = md.pts[md.off[lane] : md.off[lane + 1]]
        cs = md.cum_s[md.off[lane] : md.off[lane + 1]]
        x, y = np.interp(s, cs, p[:, 0]), np.interp(s, cs, p[:, 1])
        s0, s1 = max(s - 1.0, 0.0), min(s + 1.0, cs[-1])
        yaw = math.atan2(np.interp(s1, cs, p[:, 1]) - np.interp(s0, cs, p[:, 1]),
                         np.interp(s1, cs, p[:, 0]) - np.interp(s0, cs, p[:, 0]))  # fmt: skip
        rows.append((i, c, lane, s, nxt, x, y, yaw))
    idx = np.array([r[0] for r in rows], np.int64)
    return Placement(
        index=idx,
        cls=np.array([r[1] for r in rows], np.int64),
        lane=np.array([r[2] for r in rows], np.int64),
        s_m=np.array([r[3] for r in rows], np.float64),
        next_lane=np.array([r[4] for r in rows], np.int64),
        xy_m=np.array([[r[5], r[6]] for r in rows], np.float64).reshape(-1, 2),
        yaw_rad=np.array([r[7] for r in rows], np.float64),
        speed_mps=scene.speed_mps[idx] if len(idx) else np.zeros(0),
        size_lw_m=scene.size_lw_m[idx] if len(idx) else np.zeros((0, 2)),
        dropped=dropped,
    )
