"""Fleet replay throughput on Ray: 1 and 2 workers against the plain single-process loop, same logs.

``prescient bench fleet [--logs LOG...] [--n-logs 6 --seconds 10 --agents 20] [--model M | --no-model]
[--workers 1 2] [--out DIR] [--check]``

Every mode replays and scores the same logs with the same function
(:func:`prescient.service.app.fleet.task.replay_and_score`): the plain loop calls it in this
process (after one untimed warm-up log), the Ray modes run it as one task per log on a fresh
local instance with N worker CPUs. Reported per mode: logs per minute, ticks per second, the
speed-up over 1 worker, Ray's start time (apart), its overhead per log ((1-worker task phase -
plain loop) / logs) as a share of the replay time of a 30 s log (300 ticks at the plain loop's
time per tick), and the peak memory (RSS) of each worker process. Budgets (issue #19):
2 workers >= 1.7x one; overhead per log < 5 % of a 30 s log's replay. ``--check`` exits 1 on a miss.
Writes ``fleet.json`` into ``--out DIR``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from prescient.benchmarks.common import add_out_argument, commit, markdown_table, report_misses, write_json

MIN_SPEEDUP_2W = 1.7
MAX_OVERHEAD_SHARE = 0.05
REFERENCE_LOG_S = 30.0


def _plain(logs: list[Path], model: str | None) -> dict[str, Any]:
    from prescient.service.app.fleet.task import replay_and_score

    replay_and_score(str(logs[0]), model)  # warm-up: numba cache, onnxruntime, imports
    t0 = time.perf_counter()
    recs = [replay_and_score(str(p), model) for p in logs]
    return {
        "mode": "plain loop",
        "workers": 1,
        "start_s": 0.0,
        "tasks_s": time.perf_counter() - t0,
        "records": recs,
    }


def _ray(logs: list[Path], model: str | None, workers: int) -> dict[str, Any]:
    from prescient.service.app.fleet.ray_session import ray_session
    from prescient.service.app.fleet.run import _ray_task

    t0 = time.perf_counter()
    with ray_session(None, workers) as ray:
        t1 = time.perf_counter()
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
        recs = ray.get([remote.remote(str(p), model) for p in logs])
        t2 = time.perf_counter()
    return {
        "mode": f"Ray, {workers} worker(s)",
        "workers": workers,
        "start_s": t1 - t0,
        "tasks_s": t2 - t1,
        "records": recs,
    }


def _row(run: dict[str, Any]) -> dict[str, Any]:
    recs = run["records"]
    ticks = sum(int(r.get("ticks", 0)) for r in recs)
    rss: dict[int, float] = {}
    for r in recs:
        rss[r["pid"]] = max(rss.get(r["pid"], 0.0), float(r.get("max_rss_mb", 0.0)))
    return {
        "mode": run["mode"],
        "workers": run["workers"],
        "logs": len(recs),
        "failed": sum(1 for r in recs if r.get("status") == "failed"),
        "ticks": ticks,
        "start_s": round(run["start_s"], 2),
        "tasks_s": round(run["tasks_s"], 2),
        "logs_per_min": round(60 * len(recs) / run["tasks_s"], 2),
        "ticks_per_s": round(ticks / run["tasks_s"], 1),
        "max_rss_mb_per_process": round(max(rss.values()), 1),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Speed-ups and Ray's overhead per log from the rows (plain loop first, then 1 and 2 workers)."""
    plain = rows[0]
    by_w = {r["workers"]: r for r in rows[1:]}
    out: dict[str, Any] = {}
    if 1 in by_w:
        per_tick_s = plain["tasks_s"] / max(plain["ticks"], 1)
        overhead = (by_w[1]["tasks_s"] - plain["tasks_s"]) / max(plain["logs"], 1)
        out["overhead_per_log_s"] = round(overhead, 3)
        out["reference_log_replay_s"] = round(per_tick_s * REFERENCE_LOG_S * 10, 2)
        out["overhead_share_of_30s_log"] = round(overhead / (per_tick_s * REFERENCE_LOG_S * 10), 4)
    if 1 in by_w and 2 in by_w:
        out["speedup_2_vs_1"] = round(by_w[1]["tasks_s"] / by_w[2]["tasks_s"], 3)
    return out


def check(summary: dict[str, Any]) -> list[str]:
    """The missed budgets, one line each."""
    misses = []
    if "speedup_2_vs_1" in summary and not summary["speedup_2_vs_1"] >= MIN_SPEEDUP_2W:
        misses.append(f"fleet: 2 workers {summary['speedup_2_vs_1']:.2f}x of one < {MIN_SPEEDUP_2W}x")
    share = summary.get("overhead_share_of_30s_log")
    if share is not None and not share < MAX_OVERHEAD_SHARE:
        misses.append(
            f"fleet: Ray overhead per log {share:.1%} of a 30 s log's replay >= {MAX_OVERHEAD_SHARE:.0%}"
        )
    return misses


def _logs(args: argparse.Namespace, tmp: Path) -> list[Path]:
    if args.logs:
        from prescient.service.app.fleet.logs import expand_logs

        return expand_logs(args.logs)
    from prescient.service.app.fleet.simlogs import write_sim_log

    return [write_sim_log(tmp / f"seed{s}.mcap", s, args.seconds, args.agents) for s in range(args.n_logs)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prescient bench fleet", description=__doc__.splitlines()[0])
    p.add_argument(
        "--logs", nargs="+", default=None, help="logs, folders or globs (default: generated sim logs)"
    )
    p.add_argument("--n-logs", type=int, default=6, help="generated logs (seeds 0..N-1)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each generated log, s")
    p.add_argument("--agents", type=int, default=20, help="agents in each generated log")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped model)")
    g.add_argument("--no-model", action="store_true", help="constant-velocity fallback only")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts to run")
    p.add_argument("--check", action="store_true", help="exit 1 when a budget is missed")
    add_out_argument(p)
    args = p.parse_args(argv)
    from prescient.service.app.paths import default_model_path

    model = None if args.no_model else str(args.model or default_model_path())
    with tempfile.TemporaryDirectory(prefix="bench_fleet") as tmp:
        logs = _logs(args, Path(tmp))
        runs = [_plain(logs, model)] + [_ray(logs, model, w) for w in args.workers]
        rows = [_row(r) for r in runs]
    summary = summarise(rows)
    headers = list(rows[0])
    print(markdown_table(headers, [[r[h] for h in headers] for r in rows]))
    print(", ".join(f"{k} {v}" for k, v in summary.items()))
    path = write_json(
        "fleet", {"commit": commit(), "model": model, "rows": rows, "summary": summary}, args.out
    )
    print(f"wrote {path}")
    return report_misses(check(summary), args.check)


if __name__ == "__main__":
    raise SystemExit(main())
