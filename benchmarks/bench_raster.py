"""Rasterizer benchmark: per-frame latency of the numba fast path vs the numpy reference.

Main case: default config (58 x 256 x 256 at 0.5 m/px), 200 agents with 2 s of history (5
occupancy frames per class), a synthetic grid map, traffic lights, plan, ego path and 2000 LiDAR
points, on one core. Prints p50/p95/p99/max, the reference's time on the same scenes, and how the
cost grows with agents, resolution, history frames and map size. Writes ``bench_raster.json`` into
``--out DIR`` (default ``$PRESCIENT_HOME/bench`` or the user data folder).

``--check`` exits 1 when the fast path's p99 in the main case exceeds ``stages.raster_ms`` or its
speed-up over the reference is below ``raster.min_speedup`` (``benchmarks/budgets.toml``).

Usage: ``python -m prescient.benchmarks.bench_raster [--frames 200] [--ref-frames 3] [--quick] [--out DIR] [--check]``
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from prescient.benchmarks.common import add_out_argument, budgets, commit, report_misses, results_dir  # noqa: E402
from prescient.service.raster import RasterConfig, Rasterizer  # noqa: E402
from prescient.service.raster.reference import render_reference  # noqa: E402
from prescient.service.raster.scenes import grid_map, random_scene  # noqa: E402
from prescient.service.stats import percentiles_ms  # noqa: E402


def _pcts(samples_ns: list[int]) -> dict[str, float]:
    """:func:`prescient.service.stats.percentiles_ms` with this benchmark's ``*_ms`` JSON keys."""
    p = percentiles_ms(samples_ns)
    return {"n": p["n"], **{f"{k}_ms": p[k] for k in ("p50", "p95", "p99", "max")}}


def time_fast(r: Rasterizer, scenes: list[dict], frames: int) -> dict[str, float]:
    """Render ``frames`` frames cycling through ``scenes``; per-frame wall time."""
    for s in scenes[:3]:
        r.render(**s)  # warm caches
    out = []
    for i in range(frames):
        s = scenes[i % len(scenes)]
        t0 = time.perf_counter_ns()
        r.render(**s)
        out.append(time.perf_counter_ns() - t0)
    return _pcts(out)


def time_reference(r: Rasterizer, scenes: list[dict], frames: int) -> dict[str, float]:
    """Reference time on the first ``frames`` scenes."""
    out = []
    for s in scenes[:frames]:
        t0 = time.perf_counter_ns()
        render_reference(r, **s)
        out.append(time.perf_counter_ns() - t0)
    return _pcts(out)


def make_scenes(n_agents: int, n: int, vmap, seed: int = 0) -> list[dict]:
    """``n`` seeded scenes with ``n_agents`` agents around poses inside the map."""
    rng = np.random.default_rng(seed)
    return [
        random_scene(
            rng,
            n_agents,
            ego_pose=(rng.uniform(40, 120), rng.uniform(40, 120), rng.uniform(-np.pi, np.pi)),
            spread_m=64.0,
            vector_map=vmap,
        )  # fmt: skip
        for _ in range(n)
    ]


def check(main_case: dict, budget: dict) -> list[str]:
    """Missed budgets of the main case, as readable lines (empty: held)."""
    bad = []
    p99, limit = main_case["fast"]["p99_ms"], budget["stages"]["raster_ms"]
    if not p99 <= limit:
        bad.append(f"raster p99 {p99:.2f} ms > {limit:g} ms (200 agents, one core)")
    speedup, floor = main_case["speedup_p50"], budget["raster"]["min_speedup"]
    if not speedup >= floor:
        bad.append(f"raster speed-up over the numpy reference {speedup:.1f}x < {floor:g}x")
    return bad


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables; write JSON; with ``--check``, 1 when a budget is missed."""
    ap = argparse.ArgumentParser(
        prog="prescient bench raster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--frames", type=int, default=200, help="timed frames for the main case")
    ap.add_argument("--ref-frames", type=int, default=3, help="reference frames (slow: ~1 s each)")
    ap.add_argument("--quick", action="store_true", help="fewer frames in the sweeps")
    ap.add_argument("--no-sweeps", action="store_true", help="main case only")
    ap.add_argument("--check", action="store_true", help="exit 1 when a budget in budgets.toml is missed")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    sweep_frames = 30 if args.quick else 60
    vmap = grid_map(n_blocks=2, block_m=80.0)
    results: dict = {"host": platform.node(), "cpu": platform.processor() or platform.machine()}
    results["commit"] = commit()

    cfg = RasterConfig()
    r = Rasterizer(cfg, vmap)
    scenes = make_scenes(200, 20, vmap)
    fast = time_fast(r, scenes, args.frames)
    ref = time_reference(r, scenes, args.ref_frames)
    fast_same = time_fast(r, scenes[: args.ref_frames], max(args.ref_frames * 10, 30))
    results["main"] = {
        "shape": list(r.spec.shape),
        "agents": 200,
        "history_frames": cfg.history_frames,
        "fast": fast,
        "reference": ref,
        "fast_on_reference_scenes": fast_same,
        "speedup_p50": ref["p50_ms"] / fast_same["p50_ms"],
    }
    c, h, w = r.spec.shape
    print(f"main case: {c}x{h}x{w}, 200 agents, {cfg.history_frames} history frames (2 s), one core")
    print(f"{'path':<28}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, s in (
        ("fast (numba)", fast),
        ("fast, reference scenes", fast_same),
        ("reference (numpy)", ref),
    ):
        print(
            f"{name:<28}{s['n']:>5}{s['p50_ms']:>10.2f}{s['p95_ms']:>10.2f}{s['p99_ms']:>10.2f}{s['max_ms']:>10.2f}"
        )
    print(f"speed-up (p50, same scenes): {results['main']['speedup_p50']:.0f}x")

    sweeps: dict[str, list] = {"agents": [], "resolution_m": [], "history_frames": [], "map_blocks": []}
    for n in () if args.no_sweeps else (10, 50, 100, 200, 400):
        s = time_fast(r, make_scenes(n, 10, vmap, seed=n), sweep_frames)
        sweeps["agents"].append({"value": n, **s})
    for res, extent in () if args.no_sweeps else ((1.0, 64.0), (0.5, 64.0), (0.25, 64.0)):
        rr = Rasterizer(RasterConfig(resolution_m=res, extent_m=extent), vmap)
        s = time_fast(rr, scenes[:10], sweep_frames)
        sweeps["resolution_m"].append({"value": res, "hw": [rr.spec.height_px, rr.spec.width_px], **s})
    for frames, stride in () if args.no_sweeps else ((1, 5), (3, 5), (5, 5), (10, 2), (20, 1)):
        rr = Rasterizer(RasterConfig(history_frames=frames, history_stride_steps=stride), vmap)
        s = time_fast(rr, scenes[:10], sweep_frames)
        sweeps["history_frames"].append({"value": frames, "channels": rr.num_channels, **s})
    for blocks in () if args.no_sweeps else (1, 2, 6):
        big = grid_map(n_blocks=blocks, block_m=80.0)
        rr = Rasterizer(cfg, big)
        s = time_fast(rr, make_scenes(200, 10, big, seed=7), sweep_frames)
        sweeps["map_blocks"].append({"value": blocks, "map_m": blocks * 80.0 + 20.0, **s})
    results["sweeps"] = sweeps
    for name, rows in ((k, v) for k, v in sweeps.items() if v):
        print(f"\ncost vs {name} (fast path, 200 agents unless varied)")
        print(f"{name:<16}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}  note")
        for row in rows:
            note = {
                "resolution_m": f"H x W = {row.get('hw')}",
                "history_frames": f"C = {row.get('channels')}",
                "map_blocks": f"map {row.get('map_m')} m square",
            }.get(name, "")
            print(
                f"{row['value']!s:<16}{row['p50_ms']:>10.2f}{row['p95_ms']:>10.2f}{row['p99_ms']:>10.2f}"
                f"{row['max_ms']:>10.2f}  {note}"
            )
    out = results_dir(args.out) / "bench_raster.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")
    return report_misses(check(results["main"], budgets()), args.check)


if __name__ == "__main__":
    raise SystemExit(main())
