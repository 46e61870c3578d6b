"""Conditional-prediction request latency for 1, 3 and 8 candidate ego plans.

The scene comes from the simulator (offline, ``--agents`` agents, through the real tracker and
rasterizer) fed into a :class:`prescient.service.pipeline.Pipeline` with the ONNX model. The pipeline
serves :class:`~prescient.bus.messages.ConditionalRequest` on a real REP socket in a thread (as the service
does); the planner side is a :class:`~prescient.bus.reqrep.Requester`. Each request is a full round
trip: encode, send, B raster renders + B model passes, reply, decode.

``--check`` exits 1 when the round trip for ``conditional.plans`` plans has a p99 above
``conditional.p99_ms`` (``benchmarks/budgets.toml``).

Writes ``conditional.json`` into ``--out DIR`` (default ``$PRESCIENT_HOME/bench`` or the user data folder).

Usage: python -m prescient.benchmarks.bench_conditional [--agents 100] [--requests 100] [--plans 1 3 8]
       [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from prescient.benchmarks.common import add_out_argument, budgets, markdown_table, report_misses, write_json
from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.bus.reqrep import Replier, Requester
from prescient.service.stats import percentiles_ms


def build_scene(agents: int, model: Path | None, seconds: float = 5.0):
    from prescient.service.pipeline import Pipeline, PipelineConfig
    from prescient.service.predictor import load_service_predictor
    from prescient.sim_sensors import SimConfig, Simulation

    sim = Simulation(SimConfig(scenario="intersection", seed=3, n_agents=agents))
    predictor, reason = load_service_predictor(
        model, threads=int(os.environ.get("PRESCIENT_ORT_THREADS", "2")), providers=("CPUExecutionProvider",)
    )
    pipe = Pipeline(sim.map, predictor, PipelineConfig(deadline_guard=False), no_model_reason=reason)
    ego = None
    for msgs in sim.run(seconds):
        for msg in msgs:
            pipe.feed(msg)
            if isinstance(msg, m.EgoState):
                ego = msg
        tick = pipe.due_tick()
        if tick is not None:
            pipe.tick(tick)
    return pipe, ego


def check(results: list[dict], budget: dict) -> list[str]:
    """Missed budgets, as readable lines (empty: held, or the budgeted plan count was not run)."""
    b = budget["conditional"]
    return [
        f"conditional round trip p99 {r['p99']:.1f} ms > {b['p99_ms']:g} ms for {r['plans']} plans"
        for r in results
        if r["plans"] == b["plans"] and not r["p99"] <= b["p99_ms"]
    ]


def main(argv: list[str] | None = None) -> int:
    from prescient.service.app.stack_cli import DEFAULT_MODEL
    from prescient.service.planner_stub import candidate_plans

    ap = argparse.ArgumentParser(prog="prescient bench conditional", description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--plans", type=int, nargs="+", default=[1, 3, 8])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--no-model", action="store_true")
    ap.add_argument("--check", action="store_true", help="exit 1 when a budget in budgets.toml is missed")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    pipe, ego = build_scene(args.agents, None if args.no_model else Path(args.model))
    n_tracks = len(pipe.last_tracks.track_id) if pipe.last_tracks is not None else 0
    base = candidate_plans(ego)
    ep = f"ipc://{tempfile.mkdtemp(prefix='bench-cond-')}/cond"
    cfg = BusConfig(conditional_endpoint=ep, poll_ms=20)
    rep = Replier(cfg, ep)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            rep.serve_once(pipe.conditional, timeout_ms=20)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    req = Requester(cfg, ep)
    rows, results = [], []
    try:
        for b in args.plans:
            plans = base[[i % len(base) for i in range(b)]].copy()
            plans[:, :, 1] += (0.2 * np.arange(b, dtype=np.float32))[:, None]  # distinct plans
            msg = m.ConditionalRequest(
                header=m.Header(topic=m.TOPIC_CONDITIONAL_REQUEST), request_id=0, plans_xy_m=plans
            )
            rtt, degraded = [], 0
            for i in range(args.requests + args.warmup):
                t0 = time.perf_counter_ns()
                reply = req.request(msg, timeout_ms=10_000)
                dt = time.perf_counter_ns() - t0
                if i >= args.warmup:
                    rtt.append(dt)
                    degraded += int(reply.degraded)
            r = {"plans": b, "agents_tracked": n_tracks, "degraded": degraded, **percentiles_ms(rtt)}
            results.append(r)
            rows.append([b, n_tracks, r["n"], r["p50"], r["p95"], r["p99"], r["max"], degraded])
    finally:
        stop.set()
        th.join(2)
        req.close()
        rep.close()
    print(f"Conditional prediction round trip (ms), model {pipe.model_id}")
    print(markdown_table(["plans", "tracks", "n", "p50", "p95", "p99", "max", "degraded"], rows))
    print(f"json: {write_json('conditional', {'results': results, 'model': pipe.model_id}, args.out)}")
    return report_misses(check(results, budgets()), args.check)


if __name__ == "__main__":
    raise SystemExit(main())
