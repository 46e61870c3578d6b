#!/usr/bin/env python3
"""Container health checks and the smoke-test flow check (installed as ``prescient-healthcheck``).

Every prescient container runs one process (``prescient bus|sim|serve|planner|record``), and each
has its own notion of healthy. With no arguments (the image's ``HEALTHCHECK``) the check is chosen
from the container's main process, ``/proc/1/cmdline``:

===========  ==========================================================================
``bus``      the proxy forwards a probe subscription from its XPUB side (``sub``) to a
             publisher on its XSUB side (``pub``), both on loopback: both sockets are bound and
             the proxy loop runs. Nothing is published, so no log gets a probe message.
``sim``      a valid ``ego.state`` arrives through the bus (the simulator publishes it at 10 Hz).
``serve``    a valid ``health.predictor`` arrives (1 Hz; it names the onnxruntime provider) and
             its state is not ``failed`` (ticking, with fresh inputs).
``planner``  a valid ``planner.status`` arrives (one per prediction it judged).
``record``   the ``--out`` MCAP file was written within ``--max-age-s`` (chunks go out every 1 s).
===========  ==========================================================================

``prescient-healthcheck flow --duration-s 8`` is the smoke test's end-to-end check: it listens to
``pred.trajectories``, ``health.predictor`` and ``planner.status`` and prints one JSON line with
counts, the degraded share, the provider the service reports and the end-to-end latency the planner
measured; exit 0 only when predictions (all finite) and planner verdicts flow and, when asked
(``--min-rate-hz``, ``--max-degraded-share``, ``--p99-budget-ms``), the rate, the degraded share
and the latency meet their targets; the report's ``failures`` says which did not.

Exit codes follow Docker's HEALTHCHECK contract: 0 healthy, 1 unhealthy (reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

HEALTHY, UNHEALTHY = 0, 1

# prescient subcommand of the container's main process -> check arguments.
AUTO_CHECKS: dict[str, list[str]] = {
    "bus": ["bus"],
    "sim": ["topic", "ego.state"],
    "serve": ["topic", "health.predictor"],
    "planner": ["topic", "planner.status"],
    "record": ["file"],  # path taken from the process's --out
}


def loopback(endpoint: str) -> str:
    """The endpoint a local client connects to for a bound endpoint (``tcp://*:5551`` -> 127.0.0.1).

    Args:
        endpoint: a ZeroMQ endpoint, bound (``tcp://*:PORT``, ``tcp://0.0.0.0:PORT``) or not.

    Returns:
        The same endpoint with a wildcard host replaced by ``127.0.0.1``; others unchanged.
    """
    for wildcard in ("tcp://*:", "tcp://0.0.0.0:"):
        if endpoint.startswith(wildcard):
            return "tcp://127.0.0.1:" + endpoint[len(wildcard) :]
    return endpoint


def auto_args(cmdline: Sequence[str]) -> list[str]:
    """Check arguments for a container whose main process has this argv.

    Args:
        cmdline: argv of PID 1, e.g. ``["/opt/prescient/bin/python3", "/opt/prescient/bin/prescient",
            "record", "--out", "/data/stack.mcap"]``.

    Returns:
        Arguments for :func:`main`, e.g. ``["file", "/data/stack.mcap"]``.

    Raises:
        ValueError: not a prescient process, or a subcommand with no health check.
    """
    argv = list(cmdline)
    idx = next((i for i, a in enumerate(argv) if Path(a).name == "prescient"), None)
    if idx is None:
        raise ValueError(f"main process is not prescient: {' '.join(argv)!r}")
    rest = [a for a in argv[idx + 1 :] if a not in ("-v", "--verbose")]
    if not rest or rest[0] not in AUTO_CHECKS:
        known = ", ".join(sorted(AUTO_CHECKS))
        raise ValueError(f"no health check for `prescient {' '.join(rest)}` (known: {known})")
    args = list(AUTO_CHECKS[rest[0]])
    if rest[0] == "record":
        out = next((rest[i + 1] for i, a in enumerate(rest[:-1]) if a == "--out"), None)
        out = out or next((a.split("=", 1)[1] for a in rest if a.startswith("--out=")), None)
        if out is None:
            raise ValueError("`prescient record` without --out")
        args.append(out)
    return args


def _pid1_cmdline() -> list[str]:
    raw = Path("/proc/1/cmdline").read_bytes()
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def check_bus(timeout_s: float) -> tuple[bool, str]:
    """The proxy is up: a subscription made on its ``sub`` side reaches a publisher on its ``pub`` side."""
    from prescient.bus.config import BusConfig
    from prescient.bus.transport import Publisher, Subscriber

    cfg = BusConfig()
    pub_ep, sub_ep = loopback(cfg.pub_endpoint), loopback(cfg.sub_endpoint)
    probe = f"health.bus-probe-{uuid.uuid4().hex[:8]}"
    pub = Publisher(cfg, endpoint=pub_ep)
    sub = Subscriber(cfg, [probe], endpoint=sub_ep)
    try:
        if pub.wait_for_subscribers([probe], timeout_s):
            return True, f"proxy forwards subscriptions ({sub_ep} -> {pub_ep})"
        return False, f"no subscription forwarded from {sub_ep} to {pub_ep} within {timeout_s} s"
    finally:
        sub.close()
        pub.close()


def check_topic(topic: str, timeout_s: float) -> tuple[bool, str]:
    """A valid message on ``topic`` (a prefix) arrives through the bus within ``timeout_s``."""
    from prescient.bus.config import BusConfig
    from prescient.bus.transport import Subscriber

    cfg = BusConfig()
    sub = Subscriber(cfg, [topic])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = sub.recv(timeout_ms=100)
            if msg is not None:
                detail = ""
                if hasattr(msg, "provider"):
                    detail = f" provider={msg.provider} state={msg.state} ticks={msg.ticks} {msg.reason}"
                    if msg.state == "failed":  # alive but producing nothing: not healthy
                        return False, f"{msg.header.topic} seq={msg.header.seq}{detail}"
                return True, f"{msg.header.topic} seq={msg.header.seq}{detail}"
        rejected = sub.stats.total_rejected()
        return False, (
            f"no valid {topic!r} message from {cfg.sub_endpoint} within {timeout_s} s"
            + (f" ({rejected} rejected)" if rejected else "")
        )
    finally:
        sub.close()


def check_file(path: Path, max_age_s: float) -> tuple[bool, str]:
    """``path`` exists, is not empty and was modified within ``max_age_s``."""
    try:
        st = path.stat()
    except OSError as e:
        return False, f"{path}: {e.strerror}"
    age_s = time.time() - st.st_mtime
    if st.st_size == 0 or age_s > max_age_s:
        return False, f"{path}: {st.st_size} bytes, last written {age_s:.1f} s ago (limit {max_age_s} s)"
    return True, f"{path}: {st.st_size} bytes, last written {age_s:.1f} s ago"


def check_flow(duration_s: float, min_predictions: int) -> tuple[bool, dict]:
    """Listen for ``duration_s``: predictions, the predictor's health and planner verdicts.

    Returns:
        (ok, report). ok: at least ``min_predictions`` predictions, none with a non-finite value,
        and at least one planner verdict. report: counts, degraded share and reasons, provider,
        model, agents per message, end-to-end latency (sensor publish -> planner receive, the
        planner's own measurement; containers share the host's monotonic clock).
    """
    import numpy as np

    from prescient.bus import messages as m
    from prescient.bus.config import BusConfig
    from prescient.bus.transport import Subscriber
    from prescient.service.stats import percentiles_ms

    cfg = BusConfig()
    sub = Subscriber(cfg, [m.TOPIC_PREDICTIONS, m.health_topic("predictor"), m.TOPIC_PLANNER_STATUS])
    n_pred = n_degraded = n_nonfinite = n_status = 0
    agents: list[int] = []
    reasons: dict[str, int] = {}
    e2e_ns: list[int] = []
    health: m.Health | None = None
    model_ids: set[str] = set()
    deadline = time.monotonic() + duration_s
    try:
        while time.monotonic() < deadline:
            msg = sub.recv(timeout_ms=100)
            if isinstance(msg, m.Predictions):
                if msg.plan_id != -1:
                    continue
                n_pred += 1
                agents.append(len(msg.track_id))
                model_ids.add(msg.model_id)
                if msg.degraded:
                    n_degraded += 1
                    reasons[msg.reason] = reasons.get(msg.reason, 0) + 1
                if not (np.isfinite(msg.trajectories_m).all() and np.isfinite(msg.mode_probs).all()):
                    n_nonfinite += 1
            elif isinstance(msg, m.Health):
                health = msg
            elif isinstance(msg, m.PlannerStatus):
                n_status += 1
                if msg.e2e_latency_ns > 0:
                    e2e_ns.append(msg.e2e_latency_ns)
        rejected = dict(sub.stats.rejected)
    finally:
        sub.close()
    report = {
        "seconds": duration_s,
        "predictions": n_pred,
        "rate_hz": round(n_pred / duration_s, 2),
        "agents_mean": round(float(np.mean(agents)), 1) if agents else 0.0,
        "degraded": n_degraded,
        "degraded_reasons": reasons,
        "nonfinite": n_nonfinite,
        "model_ids": sorted(model_ids),
        "provider": health.provider if health else None,
        "service_degraded": health.degraded if health else None,
        "service_reason": health.reason if health else None,
        "service_ticks": health.ticks if health else None,
        "deadline_misses": health.deadline_misses if health else None,
        "planner_statuses": n_status,
        "e2e_ms": {k: round(v, 2) for k, v in percentiles_ms(e2e_ns).items()},
        "rejected": rejected,
    }
    ok = n_pred >= min_predictions and n_nonfinite == 0 and n_status > 0
    return ok, report


def flow_failures(
    report: dict,
    min_rate_hz: float | None = None,
    max_degraded_share: float | None = None,
    p99_budget_ms: float | None = None,
) -> list[str]:
    """Why a :func:`check_flow` report misses the smoke test's targets (empty: it meets them).

    Args:
        report: from :func:`check_flow`.
        min_rate_hz: predictions per second at least (None: not checked).
        max_degraded_share: largest share of predictions on the fallback (None: not checked).
        p99_budget_ms: the planner's end-to-end p99 at most (None: not checked).
    """
    out = []
    if report["nonfinite"]:
        out.append(f"{report['nonfinite']} predictions with non-finite values")
    if not report["planner_statuses"]:
        out.append("no planner verdicts")
    if min_rate_hz is not None and report["rate_hz"] < min_rate_hz:
        out.append(f"prediction rate {report['rate_hz']} Hz < {min_rate_hz:g} Hz")
    share = report["degraded"] / report["predictions"] if report["predictions"] else 1.0
    if max_degraded_share is not None and share > max_degraded_share:
        out.append(
            f"{report['degraded']} of {report['predictions']} predictions degraded "
            f"({share:.0%} > {max_degraded_share:.0%}): {report['degraded_reasons']}"
        )
    p99 = report["e2e_ms"]["p99"]
    if p99_budget_ms is not None and not p99 <= p99_budget_ms:  # NaN (no latency) fails too
        out.append(f"end-to-end p99 {p99} ms > budget {p99_budget_ms:g} ms")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run one check; print its verdict. Returns 0 healthy, 1 unhealthy."""
    p = argparse.ArgumentParser(prog="prescient-healthcheck", description=__doc__.split("\n\n")[0])
    p.add_argument("--timeout-s", type=float, default=4.0, help="bus and topic checks")
    sub = p.add_subparsers(dest="check", metavar="CHECK")
    sub.add_parser("auto", help="pick the check from the container's main process (default)")
    sub.add_parser("bus", help="the XSUB/XPUB proxy forwards subscriptions (run inside the bus container)")
    t = sub.add_parser("topic", help="a valid message on TOPIC arrives")
    t.add_argument("topic")
    f = sub.add_parser("file", help="a file was written recently (the recorder's log)")
    f.add_argument("path", type=Path)
    f.add_argument("--max-age-s", type=float, default=10.0)
    fl = sub.add_parser("flow", help="end-to-end: predictions and planner verdicts flow (smoke test)")
    fl.add_argument("--duration-s", type=float, default=8.0)
    fl.add_argument("--min-predictions", type=int, default=10)
    fl.add_argument("--min-rate-hz", type=float, default=None, help="fail under this prediction rate")
    fl.add_argument("--max-degraded-share", type=float, default=None, help="fail above this share (0-1)")
    fl.add_argument("--p99-budget-ms", type=float, default=None, help="fail above this end-to-end p99")
    args = p.parse_args(argv)

    if args.check in (None, "auto"):
        try:
            chosen = auto_args(_pid1_cmdline())
        except (OSError, ValueError) as e:
            print(f"prescient-healthcheck: {e}", file=sys.stderr)
            return UNHEALTHY
        args = p.parse_args(["--timeout-s", str(args.timeout_s), *chosen])

    if args.check == "flow":
        ok, report = check_flow(args.duration_s, args.min_predictions)
        report["failures"] = flow_failures(
            report, args.min_rate_hz, args.max_degraded_share, args.p99_budget_ms
        )
        if report["predictions"] < args.min_predictions:
            report["failures"].insert(0, f"{report['predictions']} predictions < {args.min_predictions}")
        print(json.dumps(report))
        return HEALTHY if ok and not report["failures"] else UNHEALTHY
    if args.check == "bus":
        ok, detail = check_bus(args.timeout_s)
    elif args.check == "topic":
        ok, detail = check_topic(args.topic, args.timeout_s)
    else:
        from prescient.bus.recorder import log_parts

        # A restarted recorder writes the next part (X.1.mcap): the newest part is the live one.
        parts = log_parts(args.path)
        ok, detail = check_file(parts[-1] if parts else args.path, args.max_age_s)
    print(("healthy: " if ok else "unhealthy: ") + detail, file=sys.stdout if ok else sys.stderr)
    return HEALTHY if ok else UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
