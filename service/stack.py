"""``prescient up``: the whole stack as supervised processes, with a live table.

Processes (each its own ``python -m service ...``): bus proxy, recorder, prediction service,
planner stub and simulator. A child that dies unexpectedly is restarted (at most
``MAX_RESTARTS`` times); the stack ends when the simulator finishes its ``--duration``, on Ctrl-C,
or on SIGTERM, and then stops every child in reverse order. The monitor subscribes to every topic:
it counts frames per topic (without decoding the heavy sensor payloads) and decodes only
predictions, planner status and health for the table.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bus import codec
from bus import messages as m
from bus.config import ENV_BUS, BusConfig, CurveConfig
from bus.errors import DecodeError, StartupError
from bus.transport import Subscriber

log = logging.getLogger(__name__)

MAX_RESTARTS = 3
SERVICE_READY_TIMEOUT_S = 120.0
LIGHT_TOPICS = (m.TOPIC_PREDICTIONS, m.TOPIC_PLANNER_STATUS, m.TOPIC_HEALTH_PREFIX)


@dataclass
class StackOptions:
    scenario: str = "intersection"
    seed: int = 0
    agents: int = 40
    duration_s: float = 40.0
    night: bool = False
    model: Path | None = None
    out_dir: Path = Path("runs/latest")
    bus: str | None = None
    record: bool = True
    picture: bool = True
    live: bool = True
    # A generated scene ("scenes.json#3") to start the simulator from; its map replaces ``scenario``.
    from_scenario: str | None = None
    # A `prescient bus keys` directory: every child (and the monitor) runs with CurveZMQ.
    curve_dir: Path | None = None


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the launcher dies (killed, closed terminal), never orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the launcher's own shutdown path still stops children


@dataclass
class Child:
    name: str
    argv: list[str]
    essential_end: bool = False  # the stack ends when this one exits by itself
    proc: subprocess.Popen | None = None
    restarts: int = 0
    log_path: Path | None = None

    def start(self, env: dict[str, str], log_dir: Path) -> None:
        self.log_path = log_dir / f"{self.name}.log"
        fh = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", *self.argv],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops children in order
            preexec_fn=_die_with_parent,
        )
        fh.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(2)

    def last_line(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1] if lines else ""


@dataclass
class Monitor:
    """Live statistics from the bus (runs in a thread)."""

    counts: dict[str, deque] = field(default_factory=dict)  # topic -> receive times (last 2 s)
    totals: dict[str, int] = field(default_factory=dict)
    stage_ns: dict[str, deque] = field(default_factory=dict)
    e2e_ns: deque = field(default_factory=lambda: deque(maxlen=600))
    e2e_all: list = field(default_factory=list)
    degraded_all: list = field(default_factory=list)  # per prediction, in arrival order
    service_segment: dict = field(
        default_factory=dict
    )  # prediction seq -> sensor publish to prediction publish
    segments_all: list = field(
        default_factory=list
    )  # per planner status: (to prediction publish, last hop) ns
    stage_all: dict[str, list] = field(default_factory=dict)
    degraded: int = 0
    predictions: int = 0
    provider: str = "?"
    deadline_misses: int = 0
    health_reason: str = ""
    rejected: int = 0
    planner_status: str = ""
    health_seen: bool = False

    def run(self, cfg: BusConfig, stop: threading.Event) -> None:
        sub = Subscriber(cfg, [""])
        try:
            while not stop.is_set():
                got = sub.recv_raw(timeout_ms=100)
                if got is None:
                    continue
                topic, payload = got
                now = time.monotonic()
                q = self.counts.setdefault(topic, deque())
                q.append(now)
                while q and q[0] < now - 2.0:
                    q.popleft()
                self.totals[topic] = self.totals.get(topic, 0) + 1
                if topic.startswith(LIGHT_TOPICS):
                    try:
                        self._take(codec.decode(topic, payload))
                    except DecodeError:
                        self.rejected += 1
        finally:
            sub.close()

    def _take(self, msg: object) -> None:
        if isinstance(msg, m.Predictions):
            if msg.source_sent_mono_ns > 0:
                # sensor publish -> prediction publish: first hop, queueing, compute, encode
                self.service_segment[msg.header.seq] = msg.header.sent_mono_ns - msg.source_sent_mono_ns
            self.predictions += 1
            self.degraded += int(msg.degraded)
            self.degraded_all.append(bool(msg.degraded))
            for k, v in msg.timings_ns.items():
                self.stage_ns.setdefault(k, deque(maxlen=600)).append(v)
                self.stage_all.setdefault(k, []).append(v)
        elif isinstance(msg, m.PlannerStatus):
            if msg.e2e_latency_ns > 0:
                self.e2e_ns.append(msg.e2e_latency_ns)
                self.e2e_all.append(msg.e2e_latency_ns)
                seg = self.service_segment.pop(msg.prediction_seq, None)
                self.segments_all.append((seg, msg.e2e_latency_ns - seg) if seg is not None else (None, None))
            self.planner_status = msg.status
        elif isinstance(msg, m.Health) and msg.node == "predictor":
            self.health_seen = True
            self.provider, self.deadline_misses, self.health_reason = (
                msg.provider,
                msg.deadline_misses,
                msg.reason,
            )

    def rates(self) -> dict[str, float]:
        now = time.monotonic()
        return {t: sum(1 for x in q if x >= now - 2.0) / 2.0 for t, q in sorted(self.counts.items())}


def _pct(values: object) -> tuple[float, float]:
    a = np.asarray(list(values), dtype=np.float64) / 1e6
    if a.size == 0:
        return float("nan"), float("nan")
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def render_table(mon: Monitor, children: list[Child], elapsed_s: float):
    """A rich renderable: rates per topic, latency per stage and end to end, health."""
    from rich.console import Group
    from rich.table import Table

    rates = Table(title="topics (Hz, last 2 s)", show_lines=False)
    rates.add_column("topic")
    rates.add_column("Hz", justify="right")
    rates.add_column("total", justify="right")
    groups: dict[str, list[tuple[float, int]]] = {}
    for t, hz in mon.rates().items():
        # The four corners of one modality share a row: "sensor.lidar.* (4)".
        key = f"{t.rsplit('.', 1)[0]}.* ({{n}})" if t.startswith("sensor.") else t
        groups.setdefault(key, []).append((hz, mon.totals.get(t, 0)))
    for key, vals in groups.items():
        hz = min(v[0] for v in vals)
        rates.add_row(
            key.format(n=len(vals)),
            f"{hz:.1f}" + (" each" if len(vals) > 1 else ""),
            str(sum(v[1] for v in vals)),
        )
    lat = Table(title="latency (ms, last 600)")
    lat.add_column("stage")
    lat.add_column("p50", justify="right")
    lat.add_column("p99", justify="right")
    for k, q in mon.stage_ns.items():
        p50, p99 = _pct(q)
        lat.add_row(k, f"{p50:.2f}", f"{p99:.2f}")
    p50, p99 = _pct(mon.e2e_ns)
    lat.add_row("[bold]end to end[/bold] (sensor publish -> planner)", f"{p50:.2f}", f"{p99:.2f}")
    state = Table(title=f"stack ({elapsed_s:.0f} s)")
    state.add_column("item")
    state.add_column("value")
    state.add_row("provider", mon.provider)
    state.add_row("predictions / degraded", f"{mon.predictions} / {mon.degraded}")
    state.add_row("deadline misses (>100 ms)", str(mon.deadline_misses))
    state.add_row("health", mon.health_reason or "ok")
    state.add_row("planner", mon.planner_status[:70])
    for c in children:
        state.add_row(
            c.name,
            ("running" if c.alive() else f"exited {c.proc.returncode if c.proc else '-'}")
            + (f", {c.restarts} restarts" if c.restarts else ""),
        )
    return Group(rates, lat, state)


@dataclass
class StackResult:
    ok: bool  # the run completed and predictions flowed
    monitor: Monitor
    summary: dict


def build_children(opts: StackOptions, log_path: Path) -> list[Child]:
    """The stack's processes in start order, with their ``prescient`` argv (not started)."""
    sim = ["sim", "--seed", str(opts.seed), "--duration", str(opts.duration_s), "--realtime"]
    if opts.from_scenario:
        sim += ["--from-scenario", opts.from_scenario]  # the scene sets the map and the agents
    else:
        sim += ["--scenario", opts.scenario, "--agents", str(opts.agents)]
    if opts.night:
        sim.append("--night")
    serve = ["serve", "--no-model"] if opts.model is None else ["serve", "--model", str(opts.model)]
    children = [Child("bus", ["bus"])]
    if opts.record:
        children.append(Child("recorder", ["record", "--out", str(log_path)]))
    children += [
        Child("service", serve),
        Child("planner", ["planner", "--stats-json", str(opts.out_dir / "planner_stats.json")]),
        Child("sim", sim, essential_end=True),
    ]
    if opts.curve_dir is not None:
        # Absolute: children run with the launcher's working directory, but say it anyway.
        for c in children:
            c.argv += ["--curve-dir", str(Path(opts.curve_dir).resolve())]
    return children


def run_stack(opts: StackOptions) -> StackResult:
    """Start, supervise, show, stop."""
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if opts.bus:
        env[ENV_BUS] = opts.bus
        os.environ[ENV_BUS] = opts.bus
    try:
        curve = CurveConfig.from_dir(opts.curve_dir) if opts.curve_dir is not None else None
        cfg = BusConfig(curve=curve) if curve is not None else BusConfig()  # the monitor's
    except ValueError as e:
        raise StartupError(str(e)) from e
    log_path = out / "log.mcap"
    children = build_children(opts, log_path)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    mon = Monitor()
    t_start = time.monotonic()
    mon_thread = threading.Thread(target=mon.run, args=(cfg, stop), daemon=True)
    for c in children:
        if c.name == "sim":
            # Sensors start once the service is warmed up and asks for the map (its first
            # health message); otherwise the first seconds of the run are lost to JIT.
            t_wait = time.monotonic()
            while (
                not mon.health_seen
                and time.monotonic() - t_wait < SERVICE_READY_TIMEOUT_S
                and not stop.is_set()
            ):
                time.sleep(0.1)
            if not mon.health_seen:
                log.warning(
                    "service not ready after %.0f s; starting the simulator anyway", SERVICE_READY_TIMEOUT_S
                )
        c.start(env, out)
        if c.name == "bus":
            time.sleep(0.3)
            if not c.alive():
                raise StartupError(f"bus proxy failed to start: {c.last_line()}")
            mon_thread.start()
    ended_normally = False
    live = None
    if opts.live:
        from rich.console import Console
        from rich.live import Live

        live = Live(
            render_table(mon, children, 0.0), console=Console(), refresh_per_second=2, transient=False
        )
        live.start()
    try:
        deadline = time.monotonic() + opts.duration_s + 60.0  # generous: the simulator ends the run
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.5)
            for c in children:
                if c.alive():
                    continue
                if c.essential_end and c.proc.returncode == 0:
                    ended_normally = True
                    stop.set()
                    break
                if c.restarts >= MAX_RESTARTS:
                    log.error("%s keeps failing (%s); stopping the stack", c.name, c.last_line())
                    stop.set()
                    break
                c.restarts += 1
                log.warning(
                    "%s exited with %s (%s); restarting (%d/%d)",
                    c.name,
                    c.proc.returncode,
                    c.last_line(),
                    c.restarts,
                    MAX_RESTARTS,
                )
                c.start(env, out)
            if live is not None:
                live.update(render_table(mon, children, time.monotonic() - t_start))
        time.sleep(1.0)  # let the last predictions reach the planner and the recorder
    finally:
        stop.set()
        for c in reversed(children):
            c.stop()
        mon_thread.join(2)
        if live is not None:
            live.update(render_table(mon, children, time.monotonic() - t_start))
            live.stop()
    e2e_p50, e2e_p99 = _pct(mon.e2e_all)
    summary = {
        "scenario": opts.scenario,
        "from_scenario": opts.from_scenario,
        "agents": opts.agents,
        "duration_s": opts.duration_s,
        "completed": ended_normally,
        "predictions": mon.predictions,
        "degraded": mon.degraded,
        "provider": mon.provider,
        "deadline_misses": mon.deadline_misses,
        "e2e_ms": {
            "p50": e2e_p50,
            "p99": e2e_p99,
            "max": float(np.max(mon.e2e_all) / 1e6) if mon.e2e_all else float("nan"),
            "n": len(mon.e2e_all),
        },
        "stages_ms": {k: dict(zip(("p50", "p99"), _pct(v))) for k, v in mon.stage_all.items()},
        "topics_total": mon.totals,
        "log": str(log_path) if opts.record else None,
    }
    if opts.picture and opts.record and log_path.exists():
        try:
            from service.summary import render_summary

            summary["picture"] = str(render_summary(log_path, out / "summary.png"))
        except Exception as e:  # a picture must never hide the run's result
            log.warning("summary picture failed: %s", e)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"prescient up: {mon.predictions} predictions ({mon.degraded} degraded) on {mon.provider}; "
        f"end-to-end latency p50 {e2e_p50:.1f} ms, p99 {e2e_p99:.1f} ms over {len(mon.e2e_all)} messages; "
        f"{mon.deadline_misses} deadline misses"
    )
    print(
        f"run directory: {out} (log.mcap, summary.json{', summary.png' if 'picture' in summary else ''}, per-process logs)"
    )
    if not ended_normally:
        log.warning("the stack did not complete normally")
    return StackResult(ended_normally and mon.predictions > 0, mon, summary)
