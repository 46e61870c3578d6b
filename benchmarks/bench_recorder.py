"""Recorder under a full-stack-like load: does it keep up with zero gaps, and how fast does it write?

A publisher *process* sends, through a real XSUB/XPUB proxy, the 16 corner sensors at their rates
(camera and LWIR 15 Hz, radar 20 Hz, LiDAR 10 Hz with ~6000 points = ~72 KB), ego state at 50 Hz,
tracks (N=100) at 10 Hz and predictions (N=100, K=6, T=80: ~770 KB) at 10 Hz, for ``--duration``
seconds, optionally ``--speed`` times faster than real time. The recorder runs in this process
(as in production, its own process) and writes zstd MCAP. Reported: messages published vs
recorded, seq gaps, throughput, and the recorder's per-message write latency p50/p95/p99/max
(``LogWriter.write_raw``, which includes compressing a chunk when one fills up).

Exits 1 when a message is missing from the log or the seq gaps exceed ``recorder.max_seq_gaps``
(``benchmarks/budgets.toml``), with or without ``--check``. Writes ``bench_recorder.json`` into
``--out DIR`` (default ``$PRESCIENT_HOME/bench`` or the user data folder), or to ``--json-out FILE``.

    .venv/bin/python -m prescient.benchmarks.bench_recorder --duration 10 [--speed 1] [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from prescient.benchmarks.common import add_out_argument, budgets, report_misses, result_path
from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.service.stats import percentiles_ms

RATES_HZ = {m.Modality.CAMERA: 15.0, m.Modality.LWIR: 15.0, m.Modality.RADAR: 20.0, m.Modality.LIDAR: 10.0}


def _messages(seed: int = 0) -> list[tuple[float, object]]:
    """(rate_hz, template message) for every published topic; seeded, realistic sizes."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    out: list[tuple[float, object]] = []
    for mod in m.Modality:
        for c in m.Corner:
            topic = m.sensor_topic(mod, c)
            if mod == m.Modality.LIDAR:
                n, p = 30, 6000
                msg = m.LidarFrame(
                    header=m.Header(topic),
                    sensor_id=topic,
                    ego_from_sensor=np.eye(4),
                    center_m=rng.normal(size=(n, 3)).astype(f32),
                    size_lwh_m=np.ones((n, 3), f32),
                    yaw_rad=np.zeros(n, f32),
                    class_id=np.ones(n, np.int32),
                    score=np.ones(n, f32),
                    points_m=(rng.normal(size=(p, 3)) * 20).astype(f32),
                )
            elif mod == m.Modality.RADAR:
                k = 64
                msg = m.RadarFrame(
                    header=m.Header(topic),
                    sensor_id=topic,
                    ego_from_sensor=np.eye(4),
                    range_m=rng.uniform(1, 100, k).astype(f32),
                    azimuth_rad=rng.uniform(-1, 1, k).astype(f32),
                    range_rate_mps=rng.normal(size=k).astype(f32),
                    rcs_dbsm=rng.normal(size=k).astype(f32),
                )
            else:
                n = 20
                kw = dict(
                    header=m.Header(topic),
                    sensor_id=topic,
                    ego_from_sensor=np.eye(4),
                    intrinsics=np.eye(3),
                    image_wh_px=np.array([1920, 1080], np.int32),
                    boxes_px=rng.uniform(0, 1000, (n, 4)).astype(f32),
                    class_id=np.ones(n, np.int32),
                    class_conf=np.ones(n, f32),
                )
                msg = (
                    m.CameraFrame(attributes=np.zeros(n, np.uint8), **kw)
                    if mod == m.Modality.CAMERA
                    else m.LwirFrame(heat_k=np.ones(n, f32), **kw)
                )
            out.append((RATES_HZ[mod], msg))
    n, k, t = 100, 6, m.PRED_HORIZON_STEPS
    out.append((50.0, m.empty(m.EgoState, m.TOPIC_EGO)))
    tracks = m.empty(m.Tracks, m.TOPIC_TRACKS)
    arrays = {
        name: rng.normal(size=tuple(n if isinstance(d, str) else d for d in spec.shape)).astype(spec.dtype)
        for name, spec in m.array_specs(m.Tracks).items()
        if name != "ego_pose"
    }
    import dataclasses

    out.append((10.0, dataclasses.replace(tracks, **arrays)))
    pred = m.empty(m.Predictions, m.TOPIC_PREDICTIONS, model_id="bench", dt_s=0.1, plan_id=-1)
    probs = np.full((n, k), 1 / k, f32)
    out.append(
        (
            10.0,
            dataclasses.replace(
                pred,
                track_id=np.arange(n, dtype=np.int64),
                class_id=np.ones(n, np.int32),
                mode_probs=probs,
                trajectories_m=rng.normal(size=(n, k, t, 2)).astype(f32),
                scale_m=rng.uniform(0.1, 2, (n, k, t, 2)).astype(f32),
            ),
        )
    )
    return out


def publisher_main(cfg: BusConfig, duration_s: float, speed: float) -> None:
    """Child process: publish the load, print one JSON line with the counts."""
    import dataclasses

    from prescient.bus.transport import Publisher

    pub = Publisher(cfg)
    templates = _messages()
    if not pub.wait_for_subscribers([m.TOPIC_EGO], 20.0):
        print(json.dumps({"error": "no subscriber"}), flush=True)
        return
    heap = [(0.0, i) for i in range(len(templates))]
    t0 = time.monotonic()
    sent_bytes, late_max = 0, 0.0
    while heap:
        due, i = heapq.heappop(heap)
        if due > duration_s:
            continue
        delay = t0 + due / speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late_max = max(late_max, -delay)
        rate, tmpl = templates[i]
        msg = dataclasses.replace(tmpl, header=dataclasses.replace(tmpl.header, stamp_ns=int(due * 1e9)))
        sent_bytes += len(pub.publish(msg, check=False))
        heapq.heappush(heap, (due + 1.0 / rate, i))
    time.sleep(0.5)
    print(
        json.dumps(
            {"sent": pub.sent, "bytes": sent_bytes, "wall_s": time.monotonic() - t0, "max_late_s": late_max}
        ),
        flush=True,
    )
    pub.close()


def _pct_us(a_ns: np.ndarray) -> dict[str, float]:
    """p50/p95/p99/max in microseconds, from :func:`prescient.service.stats.percentiles_ms`."""
    p = percentiles_ms(a_ns)
    return {k: p[k] * 1e3 for k in ("p50", "p95", "p99", "max")}


def check(res: dict, budget: dict) -> list[str]:
    """Missed budgets, as readable lines (empty: every message recorded, gaps within budget)."""
    bad = []
    if res["seq_gaps"] > budget["recorder"]["max_seq_gaps"]:
        bad.append(f"recorder: {res['seq_gaps']} seq gaps > {budget['recorder']['max_seq_gaps']}")
    if res["recorded"] != res["published"]:
        bad.append(f"recorder: {res['recorded']} of {res['published']} published messages recorded")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="prescient bench recorder", description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of simulated time")
    ap.add_argument("--speed", type=float, default=1.0, help="x real time")
    add_out_argument(ap)
    ap.add_argument(
        "--json-out", type=Path, default=None, metavar="FILE", help="the JSON file itself (overrides --out)"
    )
    ap.add_argument("--role", choices=("main", "publisher"), default="main", help=argparse.SUPPRESS)
    ap.add_argument("--pub-endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--sub-endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--check", action="store_true", help="(a miss always exits 1; accepted for --check all)")
    args = ap.parse_args(argv)
    if args.role == "publisher":
        publisher_main(
            BusConfig(pub_endpoint=args.pub_endpoint, sub_endpoint=args.sub_endpoint),
            args.duration,
            args.speed,
        )
        return 0

    from prescient.bus.logsummary import summarize_log
    from prescient.bus.proxy import Proxy
    from prescient.bus.recorder import Recorder

    tmp = Path(tempfile.mkdtemp(prefix="bench_rec"))
    cfg = BusConfig(
        pub_endpoint=f"ipc://{tmp}/pub", sub_endpoint=f"ipc://{tmp}/sub", rcvhwm=10_000, sndhwm=10_000
    )
    out = tmp / "rec.mcap"
    with Proxy(cfg):
        rec = Recorder(cfg, out)
        stop = threading.Event()
        th = threading.Thread(target=rec.run, kwargs={"stop": stop})
        th.start()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "prescient.benchmarks.bench_recorder",
                "--role",
                "publisher",
                "--duration",
                str(args.duration),
                "--speed",
                str(args.speed),
                "--pub-endpoint",
                cfg.pub_endpoint,
                "--sub-endpoint",
                cfg.sub_endpoint,
            ],
            capture_output=True,
            text=True,
            timeout=args.duration / args.speed + 120,
        )
        pub = (
            json.loads(proc.stdout.strip().splitlines()[-1])
            if proc.stdout.strip()
            else {"error": proc.stderr}
        )
        deadline = time.monotonic() + 10
        while rec.messages < pub.get("sent", 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        th.join(30)
    summary = rec.summary
    lat = np.asarray(rec.write_latency_ns, np.int64)
    info = summarize_log(out)
    res = {
        "benchmark": "bench_recorder",
        "duration_s": args.duration,
        "speed": args.speed,
        "published": pub.get("sent"),
        "publisher_max_late_s": pub.get("max_late_s"),
        "recorded": summary.messages,
        "seq_gaps": summary.total_gaps,
        "gaps_by_topic": summary.gaps,
        "rejected": summary.rejected,
        "payload_mb": summary.bytes / 1e6,
        "file_mb": out.stat().st_size / 1e6,
        "throughput_msgs_per_s": summary.messages / max(summary.duration_s, 1e-9),
        "throughput_mb_per_s": summary.bytes / 1e6 / max(summary.duration_s, 1e-9),
        "write_latency_us": _pct_us(lat) if lat.size else {},
        "log_complete": info.stats.complete,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    if "error" in pub:
        res["publisher_error"] = pub["error"][-2000:]
    print(
        f"published {res['published']}  recorded {res['recorded']}  seq gaps {res['seq_gaps']}  "
        f"({res['payload_mb']:.1f} MB payload -> {res['file_mb']:.1f} MB file)"
    )
    print(f"throughput {res['throughput_msgs_per_s']:.0f} msg/s, {res['throughput_mb_per_s']:.1f} MB/s")
    if lat.size:
        w = res["write_latency_us"]
        print(
            f"write latency us: p50 {w['p50']:.1f}  p95 {w['p95']:.1f}  p99 {w['p99']:.1f}  max {w['max']:.1f}"
        )
    json_out = args.json_out or result_path(args.out, "bench_recorder.json")
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(res, indent=2))
    print(f"wrote {json_out}")
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    return report_misses(check(res, budgets()), check=True)


if __name__ == "__main__":
    raise SystemExit(main())
