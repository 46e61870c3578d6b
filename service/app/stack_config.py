"""One config file for the whole stack (``prescient up --config stack.toml``).

Precedence, lowest first: the defaults below, the file, the command-line flags the user actually
typed. The result is validated once (pydantic, ``extra="forbid"``: an unknown key or a wrong type
is one line naming the key) and written back as TOML (``prescient config show``, and
``config.toml`` in the run directory of ``up``), so a run can be repeated from its own copy.

Sections: ``[stack]`` (the launcher), ``[sim]`` (the simulator), ``[service]`` (``prescient serve``),
``[planner]`` (the planner stub). Paths are made absolute: relative ones in a file are relative
to the file's folder, relative ones on the command line to the working directory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prescient.bus.cli import non_negative_float, positive_float, positive_int
from prescient.bus.errors import StartupError

if TYPE_CHECKING:
    from prescient.service.tracker import TrackerConfig

# Strict: "7" is not an int and "true" not a bool (a typo in a file is an error, not a guess).
_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


def _default_threads() -> int:
    """``$PRESCIENT_ORT_THREADS`` (as ``serve --threads`` defaults to), else 2."""
    try:
        return max(int(os.environ.get("PRESCIENT_ORT_THREADS", "2")), 1)
    except ValueError:
        return 2


class StackSection(BaseModel):
    """The launcher: how long, which bus, what to keep."""

    model_config = _STRICT
    duration_s: float = Field(40.0, gt=0.0, le=7 * 86400.0)  # simulated seconds, run in real time
    bus: str | None = None  # base endpoint (sets $PRESCIENT_BUS for every child)
    curve_dir: Path | None = Field(None, strict=False)  # `prescient bus keys` directory: CurveZMQ everywhere
    record: bool = True
    picture: bool = True
    live: bool = True
    # A Foxglove WebSocket server on this port (`prescient view --live`, loopback); None: none.
    foxglove_port: int | None = Field(None, ge=0, le=65535)


class SimSection(BaseModel):
    """The simulator (``prescient sim``)."""

    model_config = _STRICT
    scenario: str = "intersection"
    seed: int = Field(0, ge=0)
    agents: int = Field(40, ge=0, le=1000)
    night: bool = False
    from_scenario: str | None = None  # "scenes.json#3": its map and agents replace scenario/agents

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, v: str) -> str:
        from prescient.sim_sensors.config import check_scenario

        return check_scenario(v)


class ServiceSection(BaseModel):
    """The prediction service (``prescient serve``); every field maps to one of its flags."""

    model_config = _STRICT
    model: Path | None = Field(
        None, strict=False
    )  # None: the shipped model (constant-velocity fallback if absent)
    no_model: bool = False  # run on the fallback only (degraded)
    threads: int = Field(default_factory=_default_threads, ge=1, le=256)
    cpu: bool = False  # do not try the CUDA provider
    budget_ms: float = Field(100.0, gt=0.0)
    map_timeout_s: float = Field(30.0, gt=0.0)
    lidar: bool = True
    max_input_rate_hz: float = Field(200.0, ge=0.0)
    model_passes: int = Field(1, ge=1, le=64)
    agents_per_pass: int | None = Field(None, ge=1, le=4096)  # None: the predictor's default
    metrics_port: int | None = Field(None, ge=0, le=65535)  # None: no endpoint; 0: a free port
    metrics_host: str = "127.0.0.1"

    def serve_args(self) -> list[str]:
        """``prescient serve`` flags for everything but the model (the launcher passes that)."""
        args = ["--threads", str(self.threads), "--budget-ms", repr(self.budget_ms)]
        args += ["--map-timeout-s", repr(self.map_timeout_s)]
        args += [
            "--max-input-rate-hz",
            repr(self.max_input_rate_hz),
            "--model-passes",
            str(self.model_passes),
        ]
        args += ["--cpu"] if self.cpu else []
        args += [] if self.lidar else ["--no-lidar"]
        if self.agents_per_pass is not None:
            args += ["--agents-per-pass", str(self.agents_per_pass)]
        if self.metrics_port is not None:
            args += ["--metrics-port", str(self.metrics_port), "--metrics-host", self.metrics_host]
        return args


def _tracker_default(name: str) -> Any:
    """The tracker's own default (``TrackerConfig``): one source for both."""
    from prescient.service.tracker import TrackerConfig

    return getattr(TrackerConfig(), name)


class TrackerSection(BaseModel):
    """The service's tracker (``TrackerConfig``): the knobs an operator tunes; each maps to a
    ``prescient serve`` flag."""

    model_config = _STRICT
    reorder_window_s: float = Field(
        default_factory=lambda: _tracker_default("reorder_window_s"), ge=0.0, le=1.0
    )
    lookahead: bool = Field(default_factory=lambda: _tracker_default("lookahead"))  # see tracker/timeline.py
    max_range_m: float = Field(default_factory=lambda: _tracker_default("max_range_m"), gt=0.0, le=1000.0)
    use_radar: bool = Field(default_factory=lambda: _tracker_default("use_radar"))
    use_bearings: bool = Field(default_factory=lambda: _tracker_default("use_bearings"))  # camera/LWIR
    capacity: int = Field(default_factory=lambda: _tracker_default("capacity"), ge=1, le=65536)

    def serve_args(self) -> list[str]:
        """``prescient serve`` flags."""
        args = ["--reorder-window-s", repr(self.reorder_window_s), "--max-range-m", repr(self.max_range_m)]
        args += ["--track-capacity", str(self.capacity)]
        args += [] if self.lookahead else ["--no-lookahead"]
        args += [] if self.use_radar else ["--no-radar"]
        return args + ([] if self.use_bearings else ["--no-bearings"])


class PlannerSection(BaseModel):
    """The planner stub (``prescient planner``)."""

    model_config = _STRICT
    conditional_every: int = Field(10, ge=0)  # ask for conditional predictions every N predictions

    def planner_args(self) -> list[str]:
        """``prescient planner`` flags."""
        return ["--conditional-every", str(self.conditional_every)]


class StackConfig(BaseModel):
    """Everything ``prescient up`` starts, in one validated value."""

    model_config = _STRICT
    stack: StackSection = Field(default_factory=StackSection)
    sim: SimSection = Field(default_factory=SimSection)
    service: ServiceSection = Field(default_factory=ServiceSection)
    tracker: TrackerSection = Field(default_factory=TrackerSection)
    planner: PlannerSection = Field(default_factory=PlannerSection)


_PATH_KEYS = (("stack", "curve_dir"), ("service", "model"), ("sim", "from_scenario"))


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw tables of a TOML file, paths made absolute against the file's folder.

    Raises:
        StartupError: unreadable, not TOML (the parser's line and column), or a section that is
            not a table.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise StartupError(f"config {path}: cannot read: {e.strerror or e}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise StartupError(f"config {path}: not TOML: {e}") from e
    base = Path(path).expanduser().absolute().parent
    for section, key in _PATH_KEYS:
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str):
            table[key] = str(base / Path(table[key]).expanduser())
    return data


def merge(file_data: Mapping[str, Any], overrides: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    """``file_data`` with each ``(section, key) -> value`` of ``overrides`` set on top (copies)."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in file_data.items()}
    for (section, key), value in overrides.items():
        table = out.setdefault(section, {})
        if not isinstance(table, dict):
            continue  # a scalar where a section belongs: validation names it
        table[key] = value
    return out


def build_config(
    config_file: Path | None,
    overrides: Mapping[tuple[str, str], Any],
    flag_names: Mapping[tuple[str, str], str] | None = None,
) -> StackConfig:
    """Defaults < ``config_file`` < ``overrides`` (the flags given), validated.

    ``flag_names`` (``(section, key) -> "--flag"``) lets an error name the flag a bad value came from.

    Raises:
        StartupError: one line naming each bad key (unknown key, wrong type, out of range).
    """
    data = read_config_file(config_file) if config_file is not None else {}
    try:
        return StackConfig.model_validate(merge(data, overrides))
    except ValidationError as e:
        raise StartupError(_one_line(e, overrides, config_file, flag_names or {})) from e


def _one_line(
    err: ValidationError,
    overrides: Mapping[tuple[str, str], Any],
    config_file: Path | None,
    flag_names: Mapping[tuple[str, str], str],
) -> str:
    """Each bad key, where it came from (a flag or the file) and why, on one line."""
    parts = []
    for e in err.errors():
        loc = tuple(str(x) for x in e["loc"])
        key = (loc[0] if loc else "", loc[1] if len(loc) > 1 else "")
        if key in overrides or config_file is None:
            source = flag_names.get(key, "flag")
        else:
            source = f"config {config_file}"
        why = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        parts.append(f"{source}: {'.'.join(loc) or 'config'}: {why}")
    return "; ".join(parts)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"non-finite value {v!r}")
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)  # a TOML basic string (JSON escapes are valid TOML)


def to_toml(cfg: StackConfig) -> str:
    """The config as TOML, one table per section; unset (None) values are left out."""
    lines: list[str] = []
    for section, table in cfg.model_dump().items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


def write_config(cfg: StackConfig, path: Path) -> Path:
    """Write :func:`to_toml` to ``path`` (the run directory's ``config.toml``); returns it."""
    path.write_text(to_toml(cfg), encoding="utf-8")
    return path


def add_tracker_args(p: argparse.ArgumentParser) -> None:
    """``serve``'s tracker flags (the ``[tracker]`` section of ``up --config``); defaults: TrackerConfig."""
    from prescient.service.tracker import TrackerConfig

    d = TrackerConfig()
    g = p.add_argument_group("tracker")
    g.add_argument(
        "--reorder-window-s",
        type=non_negative_float,
        default=d.reorder_window_s,
        help="how long frames wait to be applied in capture order (the look-ahead predicts through it)",
    )
    g.add_argument("--no-lookahead", action="store_true", help="publish only committed tracks")
    g.add_argument(
        "--max-range-m", type=positive_float, default=d.max_range_m, help="tracks beyond are dropped"
    )
    g.add_argument(
        "--track-capacity", type=positive_int, default=d.capacity, help="track slots, allocated once"
    )
    g.add_argument("--no-radar", action="store_true", help="do not fuse radar")
    g.add_argument("--no-bearings", action="store_true", help="no camera/LWIR bearing updates")


def tracker_config_from_args(args: argparse.Namespace) -> TrackerConfig:
    """The service's ``TrackerConfig`` from ``serve``'s flags.

    Raises:
        StartupError: an inconsistent combination (``TrackerConfig.validate``).
    """
    import dataclasses

    from prescient.service.tracker import TrackerConfig

    cfg = dataclasses.replace(
        TrackerConfig(),
        reorder_window_s=args.reorder_window_s,
        lookahead=not args.no_lookahead,
        max_range_m=args.max_range_m,
        capacity=args.track_capacity,
        use_radar=not args.no_radar,
        use_bearings=not args.no_bearings,
    )
    try:
        cfg.validate()
    except ValueError as e:
        raise StartupError(f"tracker: {e}") from e
    return cfg
