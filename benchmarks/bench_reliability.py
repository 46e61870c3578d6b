"""Reliability under attack: the live stack (``prescient up``) against hostile traffic and kill -9.

Starts ``prescient up --no-live`` on a private bus, waits for predictions at 10 Hz, then runs
each attack of ``benchmarks/reliability/runs.py`` in turn (malformed payloads on every input
topic, a 1.1 MB topic name, 100,000 random topics, a 70 MB frame, replayed / out-of-order /
future-dated / seq-forged frames, absurd content, a 10x flood, garbage on the conditional and
map request endpoints, then kill -9 of each child) and reports per attack:

* count: hostile messages sent (valid requests mixed in are not counted);
* processes up after it (over the launcher's children) and restarts no kill explains (crashes);
* prediction rate on ``pred.trajectories`` (our own subscriber) in the 2 s before, during, and
  2-4 s after it, and the recovery time: seconds after the attack until a 2 s window holds
  >= 9.5 Hz again;
* counted as: the growth of the service's ``health.predictor`` ``rejected`` counters, the
  replies of request endpoints and what the planner reported;
* data lost: for the recorder kill, messages our subscriber saw that no log part holds.

``--check`` exits 1 when a target is missed (values in ``[reliability]`` of
``benchmarks/budgets.toml``): >= 9 Hz during every single-source attack, recovery to >= 9.5 Hz
within 2 s after every attack, no crash, no hang (a live process that stops answering), recorder
loss <= 1 s of bus traffic across its kill -9.

The stack's run directory (logs, ``up.log``) and ``reliability.json`` go to ``--out DIR``, default
``reliability/<time>/`` and ``reliability.json`` under ``$PRESCIENT_HOME/bench`` or the user data folder.

Usage: prescient bench reliability [--quick] [--check] [--attacks a,b] [--bus tcp://127.0.0.1:5790] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prescient.benchmarks.common import (
    budgets,
    default_results_dir,
    machine,
    markdown_table,
    report_misses,
    results_dir,
    write_json,
)
from prescient.benchmarks.reliability import attacks as a
from prescient.benchmarks.reliability import runs
from prescient.benchmarks.reliability.observe import (
    BusObserver,
    describe_delta,
    rate_hz,
    recovery_s,
    rejected_delta,
)
from prescient.benchmarks.reliability.recloss import recorder_loss
from prescient.benchmarks.reliability.senders import probe
from prescient.benchmarks.reliability.stackproc import StackProcess, unexplained_restarts
from prescient.bus import messages as m
from prescient.bus.config import ENV_BUS, BusConfig
from prescient.service.stats import percentiles_ms

log = logging.getLogger(__name__)

AFTER_S = 5.0  # wait after each attack: recovery (up to 3 s measurable) and the after window
_BUDGET = budgets()["reliability"]
DURING_MIN_HZ = float(_BUDGET["during_min_hz"])
RECOVERED_HZ = float(_BUDGET["recovered_hz"])
RECOVERY_LIMIT_S = float(_BUDGET["recovery_limit_s"])
MAX_RECORDER_LOSS_S = float(_BUDGET["max_recorder_loss_s"])
WARMUP_LIMIT_S = 180.0
DEFAULT_BUS = "tcp://127.0.0.1:5790"


@dataclass
class Row:
    """One line of the table (times are monotonic seconds)."""

    attack: str
    target: str
    during_target: bool
    t_start: float
    t_end: float
    outcome: runs.Outcome
    up: tuple[int, int] = (0, 0)
    rates: tuple[float, float, float] = (float("nan"),) * 3
    recovery_s: float | None = None
    counted: str = "-"
    hangs: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    lost: dict[str, Any] | None = None


def bus_config(bus: str) -> BusConfig:
    """The endpoints of a stack whose ``$PRESCIENT_BUS`` is ``bus``."""
    old = os.environ.get(ENV_BUS)
    os.environ[ENV_BUS] = bus
    try:
        return BusConfig()
    finally:
        if old is None:
            del os.environ[ENV_BUS]
        else:
            os.environ[ENV_BUS] = old


def _planner_notes(obs: BusObserver, t0: float, t1: float) -> str:
    bad = {"conditional failed": 0, "stale/missing": 0}
    for t, s in list(obs.status):
        if t0 <= t < t1:
            low = s.lower()
            bad["conditional failed"] += "conditional request failed" in low
            bad["stale/missing"] += any(w in low for w in ("stale", "missing", "no prediction"))
    return ", ".join(f"planner {k} x{v}" for k, v in bad.items() if v)


def _probe(ctx: runs.Ctx, row: Row, log_bytes_at_end: int) -> None:
    """Processes up and hangs: every live process must still do its job."""
    stack, obs, now = ctx.stack, ctx.obs, time.monotonic()
    kids = stack.children()
    row.up = (len(kids), len(stack.expected))
    if "service" in kids:
        if not any(t > now - 2.0 for t in obs.pred_t[-50:]):
            row.hangs.append("service alive, no prediction in 2 s")
        lat, _ = probe(
            ctx.cfg.conditional_endpoint, [m.TOPIC_CONDITIONAL_REQUEST.encode(), a.conditional_request(0, 1)]
        )
        if lat is None:
            row.hangs.append("conditional endpoint: no reply in 3 s")
    if "planner" in kids and not any(t > now - 2.0 for t, _ in obs.status[-50:]):
        row.hangs.append("planner alive, no status in 2 s")
    if "sim" in kids:
        lat, _ = probe(ctx.cfg.map_endpoint, [m.TOPIC_MAP_REQUEST.encode(), a.map_request(0)])
        if lat is None:
            row.hangs.append("map endpoint: no reply in 3 s")
    if "recorder" in kids and runs.log_bytes(stack.run_dir)[0] <= log_bytes_at_end:
        row.hangs.append(f"recorder alive, log not growing for {AFTER_S:.0f} s")


def run_attack(ctx: runs.Ctx, name: str) -> Row:
    fn, target, during_target = runs.ATTACKS[name]
    obs = ctx.obs
    t_start = time.monotonic()
    try:
        out = fn(ctx)
    except Exception as e:  # a broken attack must not hide the others' results
        log.error("attack %s failed: %s", name, traceback.format_exc())
        out = runs.Outcome(fails=[f"bench error: {type(e).__name__}: {e}"])
    t_end = out.t_end or time.monotonic()
    bytes_at_end = runs.log_bytes(ctx.stack.run_dir)[0]
    time.sleep(max(t_end + AFTER_S - time.monotonic(), 0.0))
    row = Row(name, target, during_target, t_start, t_end, out)
    _probe(ctx, row, bytes_at_end)
    pred = list(obs.pred_t)
    during_end = max(t_end, t_start + 0.5)
    row.rates = (
        rate_hz(pred, t_start - 2.0, t_start),
        rate_hz(pred, t_start, during_end),
        rate_hz(pred, t_end + 2.0, t_end + 4.0),
    )
    row.recovery_s = (
        out.recovery_s
        if name.startswith("kill:")
        else recovery_s(pred, t_end, RECOVERED_HZ, 2.0, AFTER_S - 2.0)
    )
    delta = rejected_delta(obs.health_at(t_start), obs.health_at(t_end + AFTER_S))
    states = sorted(
        {h.state for h in list(obs.health) if h.node == "predictor" and t_start <= h.t_s < t_end + 2.0}
        - {"ok"}
    )
    parts = [describe_delta(delta)] + out.notes + ([f"health {'/'.join(states)}"] if states else [])
    parts.append(_planner_notes(obs, t_start, t_end + 2.0))
    row.counted = "; ".join(p for p in parts if p and p != "-") or "-"
    return row


def _fmt_rate(v: float) -> str:
    return "-" if v != v else f"{v:.1f}"


def table(rows: list[Row]) -> str:
    headers = [
        "attack",
        "target",
        "count",
        "up",
        "Hz before",
        "during",
        "after",
        "recovery s",
        "counted as",
        "data lost",
        "reply ms p50/p95/p99/max",
    ]
    body = []
    for r in rows:
        o = r.outcome
        rec = (
            "-"
            if r.recovery_s is None and r.attack.startswith("kill:")
            else (f">{AFTER_S - 2.0:.0f}" if r.recovery_s is None else f"{r.recovery_s:.2f}")
        )
        lat = "-"
        if o.latency_ns:
            p = percentiles_ms(o.latency_ns)
            lat = f"{p['p50']:.1f}/{p['p95']:.1f}/{p['p99']:.1f}/{p['max']:.1f}"
        lost = "-"
        if r.lost is not None:
            lost = f"{r.lost['missing']} msgs = {r.lost['loss_s']:.2f} s"
            if r.lost["fill_parts"]:
                lost += f" (recorder parts alone: {r.lost['missing_recorder_only']} = {r.lost['loss_s_recorder_only']:.2f} s)"
            if not r.lost["pre_kill_log_kept"]:
                lost += "; log before kill gone"
        up = f"{r.up[0]}/{r.up[1]}" + (f" ({len(r.crashes)} crashed)" if r.crashes else "")
        count = str(o.hostile) + (f" (+{o.valid} valid)" if o.valid else "")
        body.append(
            [r.attack, r.target, count, up, *map(_fmt_rate, r.rates), rec, r.counted[:160], lost, lat]
        )
    return markdown_table(headers, body)


def check(rows: list[Row], stopped: bool) -> list[str]:
    """Missed targets, as readable lines (empty: every target held)."""
    bad = []
    for r in rows:
        kill = r.attack.startswith("kill:")
        if r.during_target and not r.rates[1] >= DURING_MIN_HZ:
            bad.append(f"{r.attack}: {r.rates[1]:.2f} Hz predictions during the attack (< {DURING_MIN_HZ})")
        if not kill and (r.recovery_s is None or r.recovery_s > RECOVERY_LIMIT_S):
            got = "not within 3 s" if r.recovery_s is None else f"after {r.recovery_s:.2f} s"
            bad.append(f"{r.attack}: back to >= {RECOVERED_HZ} Hz {got} (limit {RECOVERY_LIMIT_S} s)")
        bad += [f"{r.attack}: crash: {c}" for c in r.crashes]
        bad += [f"{r.attack}: hang: {h}" for h in r.hangs]
        bad += [f"{r.attack}: {f}" for f in r.outcome.fails]
        if r.up[0] < r.up[1]:
            bad.append(f"{r.attack}: {r.up[0]} of {r.up[1]} processes up after it")
        if r.lost is not None:
            if not r.lost["loss_s"] <= MAX_RECORDER_LOSS_S:
                bad.append(
                    f"{r.attack}: recorder lost {r.lost['missing']} messages = {r.lost['loss_s']:.2f} s of traffic (> {MAX_RECORDER_LOSS_S} s)"
                )
            if not r.lost["pre_kill_log_kept"]:
                bad.append(f"{r.attack}: the log written before the kill is gone (restart overwrote it?)")
    if not stopped:
        bad.append("the launcher did not stop within 40 s of SIGINT (hang)")
    return bad


def _summary_restarts(run_dir: Path) -> dict[str, int]:
    """``restarts`` per child from the launcher's ``summary.json`` (empty if absent)."""
    try:
        got = json.loads((run_dir / "summary.json").read_text()).get("restarts", {})
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in got.items() if isinstance(v, int)} if isinstance(got, dict) else {}


@dataclass
class BenchOptions:
    quick: bool = False
    attacks: tuple[str, ...] = tuple(runs.ATTACKS)
    bus: str = DEFAULT_BUS
    out_dir: Path | None = None
    model: Path | None = None
    agents: int = 20
    seed: int = 0


@dataclass
class Report:
    rows: list[Row]
    failures: list[str]
    hostile: int
    crash_logs: list[str]
    run_dir: Path


def run_bench(opts: BenchOptions) -> Report:
    """Start the stack, run the attacks, stop the stack, and judge."""
    run_dir = opts.out_dir or results_dir() / "reliability" / time.strftime("%Y%m%d-%H%M%S")
    cfg = bus_config(opts.bus)
    stack = StackProcess(run_dir, opts.bus, agents=opts.agents, model=opts.model, record=True)
    stack.start()
    obs = BusObserver(cfg, a.SUBSCRIBED_TOPICS).start()
    rng = np.random.default_rng(opts.seed)
    templates = {t: a.valid_frame(t, 0, 0, rng).payload for t in a.SUBSCRIBED_TOPICS}
    ctx = runs.Ctx(cfg, obs, stack, rng, runs.QUICK if opts.quick else runs.FULL, templates)
    rows: list[Row] = []
    run_fail: list[str] = []
    try:
        t0 = time.monotonic()
        warm = runs.wait_for(
            lambda: recovery_s(obs.pred_t, t0, RECOVERED_HZ, 2.0, WARMUP_LIMIT_S) if stack.alive() else -1.0,
            WARMUP_LIMIT_S,
        )
        if warm is None or warm < 0 or not stack.alive():
            run_fail.append(f"no steady predictions within {WARMUP_LIMIT_S:.0f} s of start (see {run_dir})")
        else:
            _ = ctx.pub  # connect the attack socket now (it waits for the subscriptions)
            time.sleep(2.0)  # the first attack's "before" window
            ctx.early = sorted(
                (t, topic, p) for topic in a.SUBSCRIBED_TOPICS for t, p in list(obs.capture[topic])
            )
            for i, name in enumerate(opts.attacks):
                print(f"[{i + 1}/{len(opts.attacks)}] {name} ...", flush=True)
                rows.append(run_attack(ctx, name))
                if not stack.alive():
                    run_fail.append(f"the launcher exited during {name}")
                    break
    finally:
        ctx.close()
        stopped = stack.stop() is not None
        obs.stop()
    if ctx.recorder_window:
        w = ctx.recorder_window
        loss = recorder_loss(run_dir, w["window"], w["t_kill"], w["lead_s"], stack.fill_parts())
        for r in rows:
            if r.attack == "kill:recorder":
                r.lost = loss
    crash_logs = []
    for rs in unexplained_restarts(stack.restarts(), ctx.kills):
        owner = next((r for r in reversed(rows) if r.t_start <= rs.t_s), None)
        text = f"{rs.name} exited with {rs.returncode}"
        if owner is not None:
            owner.crashes.append(text)
        else:
            run_fail.append(f"crash before the attacks: {text}")
        crash_logs.append(
            f"{text} ({owner.attack if owner else 'warm-up'}); {rs.name}.log:\n{stack.child_log_tail(rs.name)}"
        )
    # The launcher's own count (summary.json) backs up the log lines read above.
    crashed = {c.split(" ", 1)[0] for r in rows for c in r.crashes}
    for name, n in _summary_restarts(run_dir).items():
        kills = sum(1 for _, k in ctx.kills if k == name)
        if n > kills and name not in crashed:
            run_fail.append(f"summary.json: {name} restarted {n} times, {kills} of them after our kill -9")
    for name in stack.gave_up():
        run_fail.append(f"the launcher gave up restarting {name}")
    failures = run_fail + check(rows, stopped)
    hostile = sum(r.outcome.hostile for r in rows if not r.attack.startswith("kill:"))
    return Report(rows, failures, hostile, crash_logs, run_dir)


def main(argv: list[str] | None = None) -> int:
    from prescient.service.app.stack_cli import DEFAULT_MODEL

    ap = argparse.ArgumentParser(prog="prescient bench reliability", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 s attacks, 10,000 random topics (about 3 min)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--attacks", default=",".join(runs.ATTACKS), help="comma-separated subset, in order")
    ap.add_argument("--bus", default=DEFAULT_BUS, help="private $PRESCIENT_BUS for the stack under attack")
    ap.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help=f"run directory, and reliability.json (default {default_results_dir()}/reliability/<time>)",
    )
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="ONNX model of the service under attack")
    ap.add_argument("--no-model", action="store_true", help="constant-velocity fallback only")
    ap.add_argument("--agents", type=int, default=20, help="simulated agents")
    ap.add_argument("--seed", type=int, default=0, help="seed of the attack generators")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname).1s %(name)s: %(message)s")
    names = tuple(n.strip() for n in args.attacks.split(",") if n.strip())
    unknown = [n for n in names if n not in runs.ATTACKS]
    if unknown:
        ap.error(f"unknown attacks {unknown}; known: {', '.join(runs.ATTACKS)}")
    model = None if args.no_model or not Path(args.model).is_file() else Path(args.model)
    opts = BenchOptions(
        args.quick, names, args.bus, Path(args.out) if args.out else None, model, args.agents, args.seed
    )
    mach = machine()  # now: the commit whose code the stack runs (others may commit meanwhile)
    rep = run_bench(opts)
    print()
    print(
        f"Reliability under attack ({'quick' if args.quick else 'full'}), model {model.name if model else 'none (constant velocity)'}, "
        f"{args.agents} agents, machine: {mach['cpu']} x{mach['cores']}, commit {mach['commit']}"
    )
    print(table(rep.rows))
    print(f"hostile messages sent: {rep.hostile}; run directory: {rep.run_dir}")
    if not args.quick and set(names) == set(runs.ATTACKS) and rep.hostile < 100_000:
        print(f"NOTE: the full run should send >= 100,000 hostile messages; this one sent {rep.hostile}")
    for text in rep.crash_logs:
        print(f"\nCRASH: {text}")
    path = write_json(
        "reliability",
        {
            "quick": args.quick,
            "hostile": rep.hostile,
            "failures": rep.failures,
            "run_dir": str(rep.run_dir),
            "rows": [
                {
                    "attack": r.attack,
                    "target": r.target,
                    "hostile": r.outcome.hostile,
                    "valid": r.outcome.valid,
                    "up": list(r.up),
                    "rates_hz": dict(zip(("before", "during", "after"), r.rates)),
                    "recovery_s": r.recovery_s,
                    "counted": r.counted,
                    "hangs": r.hangs,
                    "crashes": r.crashes,
                    "fails": r.outcome.fails,
                    "lost": r.lost,
                    "reply_ms": percentiles_ms(r.outcome.latency_ns) if r.outcome.latency_ns else None,
                }
                for r in rep.rows
            ],
        },
        opts.out_dir,
    )
    print(f"json: {path}")
    return report_misses(rep.failures, args.check)


if __name__ == "__main__":
    raise SystemExit(main())
