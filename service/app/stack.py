"""``prescient up``: the whole stack as supervised processes, with a live table.

Processes (each its own ``python -m prescient.service ...``): bus proxy, recorder, prediction service,
planner stub and simulator. A child that dies unexpectedly is restarted (at most
``MAX_RESTARTS`` times); the stack ends when the simulator finishes its ``--duration``, on Ctrl-C,
or on SIGTERM, and then stops every child in reverse order. The monitor subscribes to every topic:
it counts frames per topic (without decoding the heavy sensor payloads) and decodes only
predictions, planner status and health for the table.

A signal is a normal end too: the run directory is completed (log finished, ``summary.json`` with
``interrupted``) before the launcher returns.
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

from prescient.bus.config import ENV_BUS, BusConfig, CurveConfig
from prescient.bus.errors import StartupError
from prescient.bus.recorder import log_parts, next_part
from prescient.service.app.gapfill import FrameRing, fill_gaps
from prescient.service.app.stack_monitor import Monitor, pct_ms, render_table
from prescient.service.stats import percentiles_ms

log = logging.getLogger(__name__)

MAX_RESTARTS = 3  # within RESTART_WINDOW_S; a child that fails faster than that ends the stack
RESTART_WINDOW_S = 60.0
SUPERVISE_PERIOD_S = 0.1  # how soon a dead child is noticed (a recorder's gap grows with it)
SERVICE_READY_TIMEOUT_S = 120.0


@dataclass
class StackOptions:
    scenario: str = "intersection"
    seed: int = 0
    agents: int = 40
    duration_s: float = 40.0
    night: bool = False
    model: Path | None = None
    # ``model`` is the shipped default: the service may fall back without it (documented), so the
    # service child gets no --model (an explicit --model must exist).
    model_is_default: bool = False
    out_dir: Path = Path("runs/latest")
    bus: str | None = None
    record: bool = True
    picture: bool = True
    live: bool = True
    # A generated scene ("scenes.json#3") to start the simulator from; its map replaces ``scenario``.
    from_scenario: str | None = None
    # A `prescient bus keys` directory: every child (and the monitor) runs with CurveZMQ.
    curve_dir: Path | None = None
    # A Foxglove WebSocket server of the live scene on this port (a `prescient view --live` child).
    foxglove_port: int | None = None
    # More flags for the service and planner children (their [service]/[planner] config), and
    # the effective config (TOML) kept in the run directory as config.toml.
    serve_args: tuple[str, ...] = ()
    planner_args: tuple[str, ...] = ()
    config_toml: str | None = None


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
    restart_times: deque = field(default_factory=deque)  # monotonic s, within RESTART_WINDOW_S

    def may_restart(self, now_s: float) -> bool:
        """Count a restart at ``now_s`` unless MAX_RESTARTS happened in the last RESTART_WINDOW_S."""
        while self.restart_times and self.restart_times[0] < now_s - RESTART_WINDOW_S:
            self.restart_times.popleft()
        if len(self.restart_times) >= MAX_RESTARTS:
            return False
        self.restart_times.append(now_s)
        self.restarts += 1
        return True

    def start(self, env: dict[str, str], log_dir: Path) -> None:
        self.log_path = log_dir / f"{self.name}.log"
        fh = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prescient.service", *self.argv],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops children in order
            preexec_fn=_die_with_parent,
        )
        fh.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def stop(self, timeout_s: float = 5.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(2)

    def last_line(self) -> str:
        if self.log_path is None:
            return ""
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1] if lines else ""


def _supervise(children: list[Child], env: dict[str, str], out: Path, mon: Monitor) -> bool:
    """Restart children that died. Returns True when the essential child ended normally.

    A child that cannot be restarted (too many failures) is left dead; the caller stops the stack.
    """
    for c in children:
        if c.alive():
            continue
        if c.essential_end and c.returncode == 0:
            return True
        if not c.may_restart(time.monotonic()):
            log.error("%s keeps failing (%s); stopping the stack", c.name, c.last_line())
            return False
        if c.name == "recorder" and mon.ring is not None:
            mon.ring.start_capture(time.monotonic_ns())  # the launcher keeps what it would lose
        log.warning(
            "%s exited with %s (%s); restarting (%d in the last %.0f s)",
            c.name,
            c.returncode,
            c.last_line(),
            len(c.restart_times),
            RESTART_WINDOW_S,
        )
        c.start(env, out)
    return False


@dataclass
class StackResult:
    ok: bool  # the run completed and predictions flowed
    monitor: Monitor
    summary: dict
    interrupted: int | None = None  # the signal that ended the run early (SIGINT, SIGTERM)


def build_children(opts: StackOptions, log_path: Path) -> list[Child]:
    """The stack's processes in start order, with their ``prescient`` argv (not started)."""
    sim = ["sim", "--seed", str(opts.seed), "--duration", str(opts.duration_s), "--realtime"]
    if opts.from_scenario:
        sim += ["--from-scenario", opts.from_scenario]  # the scene sets the map and the agents
    else:
        sim += ["--scenario", opts.scenario, "--agents", str(opts.agents)]
    if opts.night:
        sim.append("--night")
    if opts.model is None:
        serve = ["serve", "--no-model"]
    elif opts.model_is_default:
        serve = ["serve"]  # the service's own default, with its documented fallback
    else:
        serve = ["serve", "--model", str(opts.model)]
    serve += opts.serve_args
    planner = opts.planner_args
    children = [Child("bus", ["bus"])]
    if opts.record:
        children.append(Child("recorder", ["record", "--out", str(log_path)]))
    children += [
        Child("service", serve),
        Child("planner", ["planner", "--stats-json", str(opts.out_dir / "planner_stats.json"), *planner]),
        Child("sim", sim, essential_end=True),
    ]
    if opts.foxglove_port is not None:  # before the simulator, so it sees the scene from the start
        view = ["view", "--live", "--port", str(opts.foxglove_port)]
        if opts.record:  # the run directory keeps what the viewer streamed, beside the log
            view += ["--record", str(opts.out_dir / "foxglove.mcap")]
        children.insert(-1, Child("foxglove", view))
    if opts.curve_dir is not None:
        # Absolute: children run with the launcher's working directory, but say it anyway.
        for c in children:
            c.argv += ["--curve-dir", str(Path(opts.curve_dir).resolve())]
    return children


def _bus_config(opts: StackOptions) -> tuple[dict[str, str], BusConfig]:
    """The children's environment and the monitor's bus configuration."""
    env = dict(os.environ)
    if opts.bus:
        env[ENV_BUS] = opts.bus
        os.environ[ENV_BUS] = opts.bus
    try:
        curve = CurveConfig.from_dir(opts.curve_dir) if opts.curve_dir is not None else None
        return env, BusConfig(curve=curve) if curve is not None else BusConfig()
    except ValueError as e:
        raise StartupError(str(e)) from e


def _start_children(
    children: list[Child],
    env: dict[str, str],
    out: Path,
    mon: Monitor,
    mon_thread: threading.Thread,
    stop: threading.Event,
) -> None:
    """Start every child in order; the monitor once the bus is up, the simulator once the
    service is warmed up and asks for the map (its first health message), so the first seconds
    of the run are not lost to JIT. Nothing more is started once ``stop`` is set (a signal)."""
    for c in children:
        if stop.is_set():
            return
        if c.name == "sim":
            t_wait = time.monotonic()
            while not mon.health_seen and time.monotonic() - t_wait < SERVICE_READY_TIMEOUT_S:
                if stop.wait(0.1):
                    break
            if stop.is_set():
                return
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


def _supervise_until_done(
    opts: StackOptions, children: list[Child], env: dict[str, str], mon: Monitor, stop: threading.Event
) -> bool:
    """Supervise (and show) until the simulator ends, a child fails for good, or a signal.

    Returns True when the simulator ended normally. Stops every child before returning.
    """
    t_start = time.monotonic()
    live = None
    if opts.live:
        from rich.console import Console
        from rich.live import Live

        live = Live(
            render_table(mon, children, 0.0), console=Console(), refresh_per_second=2, transient=False
        )
        live.start()
    ended_normally = False
    try:
        deadline = time.monotonic() + opts.duration_s + 60.0  # generous: the simulator ends the run
        next_table = 0.0
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(SUPERVISE_PERIOD_S)
            ended_normally = _supervise(children, env, opts.out_dir, mon) or ended_normally
            if ended_normally or any(not c.alive() for c in children):
                stop.set()  # ended, or a child failed too often (logged)
            if live is not None and time.monotonic() >= next_table:
                next_table = time.monotonic() + 0.5
                live.update(render_table(mon, children, time.monotonic() - t_start))
        time.sleep(1.0)  # let the last predictions reach the planner and the recorder
    finally:
        stop.set()
        for c in reversed(children):
            c.stop()
        if live is not None:
            live.update(render_table(mon, children, time.monotonic() - t_start))
            live.stop()
    return ended_normally


def _finish_log(log_path: Path, mon: Monitor) -> list[Path]:
    """Every part of the recording, plus one with what was missed around recorder restarts."""
    parts = log_parts(log_path)
    if mon.ring is None or not mon.ring.captures:
        return parts
    gap_part = next_part(log_path)
    try:
        if fill_gaps(parts, mon.ring.captures, gap_part):
            parts.append(gap_part)
    except Exception as e:  # the run's result must still be reported
        log.warning("could not write the frames missed around recorder restarts: %s", e)
    if mon.ring.dropped_bytes:
        log.warning("%d bytes around recorder restarts exceeded the capture bound", mon.ring.dropped_bytes)
    return parts


def _summary(
    opts: StackOptions,
    mon: Monitor,
    children: list[Child],
    completed: bool,
    parts: list[Path],
    interrupted: int | None = None,
) -> dict:
    """What ``summary.json`` holds."""
    e2e, age = percentiles_ms(mon.e2e_all), percentiles_ms(mon.data_age_all)
    return {
        "scenario": opts.scenario,
        "from_scenario": opts.from_scenario,
        "agents": opts.agents,
        "duration_s": opts.duration_s,
        "completed": completed,
        # The signal that ended the run before the simulator's duration (None: it was not).
        "interrupted": None if interrupted is None else signal.Signals(interrupted).name,
        "predictions": mon.predictions,
        "degraded": mon.degraded,
        "provider": mon.provider,
        "deadline_misses": mon.deadline_misses,
        # Processing latency: newest applied input published -> planner received.
        "e2e_ms": {k: e2e[k] for k in ("p50", "p99", "max", "n")},
        # Data age: newest applied input captured -> planner received (adds the sensor latency).
        "data_age_ms": {k: age[k] for k in ("p50", "p99", "max", "n")},
        "stages_ms": {k: dict(zip(("p50", "p99"), pct_ms(v))) for k, v in mon.stage_all.items()},
        "topics_total": mon.totals,
        "log": str(opts.out_dir / "log.mcap") if opts.record else None,
        # A restarted recorder never overwrites: it writes the next part, and frames it missed
        # while restarting are in one more part (service/app/gapfill.py).
        "log_parts": [str(p) for p in parts],
        "restarts": {c.name: c.restarts for c in children if c.restarts},
    }


def _catch_signals(stop: threading.Event) -> tuple[list[int], dict]:
    """SIGINT/SIGTERM set ``stop`` and are recorded; returns (signals received, previous handlers)."""
    received: list[int] = []

    def _on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    return received, previous


def run_stack(opts: StackOptions) -> StackResult:
    """Start, supervise, show, stop. A signal ends the run early but normally (see the module)."""
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if opts.config_toml is not None:
        (out / "config.toml").write_text(opts.config_toml, encoding="utf-8")
    env, cfg = _bus_config(opts)
    log_path = out / "log.mcap"
    children = build_children(opts, log_path)
    stop = threading.Event()
    received, previous = _catch_signals(stop)
    mon = Monitor(ring=FrameRing() if opts.record else None)
    # The monitor has its own stop, set once every child has stopped, so what they published
    # after a signal (the last predictions) still counts.
    mon_stop = threading.Event()
    mon_thread = threading.Thread(target=mon.run, args=(cfg, mon_stop), daemon=True)
    ended_normally = False
    try:
        _start_children(children, env, out, mon, mon_thread, stop)
        ended_normally = _supervise_until_done(opts, children, env, mon, stop)
    finally:
        stop.set()
        for c in reversed(children):
            c.stop()
        mon_stop.set()
        if mon_thread.is_alive():
            mon_thread.join(5)
    parts = _finish_log(log_path, mon) if opts.record else []
    interrupted = received[0] if received and not ended_normally else None
    summary = _summary(opts, mon, children, ended_normally, parts, interrupted)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))  # before the (slow) picture
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # from here a second Ctrl-C ends the launcher at once
    if opts.picture and opts.record and log_path.exists() and mon.predictions > 0:
        try:
            from prescient.service.app.summary import render_summary

            summary["picture"] = str(render_summary(log_path, out / "summary.png"))
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
        except Exception as e:  # a picture must never hide the run's result
            log.warning("summary picture failed: %s", e)
    e2e, age = summary["e2e_ms"], summary["data_age_ms"]
    print(
        f"prescient up: {mon.predictions} predictions ({mon.degraded} degraded) on {mon.provider}; "
        f"processing latency p50 {e2e['p50']:.1f} ms, p99 {e2e['p99']:.1f} ms over {e2e['n']} messages; "
        f"data age p50 {age['p50']:.1f} ms, p99 {age['p99']:.1f} ms; {mon.deadline_misses} deadline misses"
    )
    print(
        f"run directory: {out} (log.mcap, summary.json{', summary.png' if 'picture' in summary else ''}, per-process logs)"
    )
    return StackResult(ended_normally and mon.predictions > 0, mon, summary, interrupted)
