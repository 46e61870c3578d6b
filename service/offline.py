"""``prescient replay LOG``: run the service pipeline offline on a recorded or imported log.

Deterministic: messages are fed in file order, ticks fire on the log's sensor clock, and the
deadline guard is off, so two replays of one log give identical tracks, rasters and predictions.
Logs with sensor frames go through the tracker; imported logs (Argoverse 2, ETH/UCY) carry ground
truth as ``Tracks`` and those drive the ticks directly.

A damaged or unfinished log is replayed as far as it can be read: every readable message is fed,
undecodable payloads are counted, and the summary lists every problem and skipped byte range with
``exit_code`` :data:`~prescient.bus.logreader.EXIT_DAMAGED` (3) for the command to return.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prescient.bus import messages as m
from prescient.bus.errors import StartupError
from prescient.bus.logfile import LogError, LogWriter, peek_stamp
from prescient.bus.logreader import EXIT_DAMAGED, ReadStats, iter_log
from prescient.bus.logsummary import LogSummary, summarize_log
from prescient.bus.maps import NO_MAP_ID, empty_map
from prescient.bus.recorder import CLOCK_METADATA, clock_anchor
from prescient.bus.replayer import iter_messages
from prescient.service.pipeline import Pipeline, PipelineConfig, TickResult
from prescient.service.stats import percentiles_ms

log = logging.getLogger(__name__)


def _find_map(path: Path) -> m.VectorMap:
    """The log's first map, or an empty one (ETH/UCY logs hold none; the map channels stay empty)."""
    for lm in iter_messages(path, topics=[m.TOPIC_MAP]):
        return lm.msg
    log.warning("%s holds no %s message: replaying with an empty map", path, m.TOPIC_MAP)
    return empty_map()


def build_offline_pipeline(
    path: Path, model: Path | None, summary: LogSummary | None = None, threads: int = 2
) -> Pipeline:
    """A pipeline for ``path``: its map, the model (or the fallback), tracker or log-tracks mode.

    ``summary`` is :func:`~prescient.bus.logsummary.summarize_log` of ``path`` when the caller has
    it; ``threads``: onnxruntime intra-op threads (a fleet task that holds one core passes 1).
    """
    from prescient.service.predictor import load_service_predictor

    summary = summary if summary is not None else summarize_log(path)
    has_sensors = any(t.startswith("sensor.") for t in summary.topics)
    if not has_sensors and m.TOPIC_TRACKS not in summary.topics:
        raise StartupError(f"{path}: no sensor frames and no {m.TOPIC_TRACKS}: nothing to predict from")
    predictor, reason = load_service_predictor(model, threads=threads, providers=("CPUExecutionProvider",))
    return Pipeline(
        _find_map(path),
        predictor,
        PipelineConfig(deadline_guard=False),
        no_model_reason=reason,
        tracks_from_log=not has_sensors,
    )


def iter_ticks(
    pipe: Pipeline,
    path: Path,
    start_ns: int | None = None,
    end_ns: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[TickResult]:
    """Feed the log through ``pipe``; yield every tick's result, in order."""
    for lm in iter_messages(path, start_ns=start_ns, end_ns=end_ns, stats=stats):
        if lm.topic == m.TOPIC_MAP:
            pipe.feed(lm.msg)  # a log of several places switches maps as the live service does
            continue
        if pipe.tracks_from_log and isinstance(lm.msg, m.Tracks):
            pipe.feed(lm.msg)
        elif not isinstance(lm.msg, (m.Tracks, m.Predictions)):
            pipe.feed(lm.msg)
        else:
            continue
        tick_ns = pipe.due_tick()
        if tick_ns is not None:
            res = pipe.tick(tick_ns)
            if res is not None:
                yield res


def _copy_context(
    writer: LogWriter, path: Path, start_ns: int | None, end_ns: int | None, first_tick_ns: int | None
) -> None:
    """Copy the map, ego and ground truth of ``path`` as recorded, for viewers and the summary.

    They go on the predictions' time base (capture stamps); the map, which has no time of its
    own, at the first tick.
    """
    for rec in iter_log(
        path, topics=[m.TOPIC_MAP, m.TOPIC_EGO, m.TOPIC_GROUND_TRUTH], start_ns=start_ns, end_ns=end_ns
    ):
        stamp = peek_stamp(rec.payload)
        if rec.topic == m.TOPIC_MAP or stamp is None:
            stamp = first_tick_ns if first_tick_ns is not None else rec.log_time_ns
        writer.write_raw(
            rec.topic,
            rec.payload,
            stamp,
            rec.publish_time_ns,
            type_name=getattr(m.topic_type(rec.topic), "__name__", None),
        )


def replay_log(
    path: Path,
    model: Path | None,
    out: Path | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    on_tick: Callable[[TickResult], Any] | None = None,
    *,
    overwrite: bool = False,
    threads: int = 2,
) -> dict[str, Any]:
    """Replay ``path`` offline; optionally write tracks and predictions to ``out`` (MCAP).

    Args:
        path: the log.
        model: ONNX model (None: the fallback predictor).
        out: MCAP to write tracks, predictions and context to.
        start_s, end_s: window in seconds from the log start.
        on_tick: called with every tick's result.
        overwrite: replace ``out`` if it holds data (never when ``out`` is ``path``).
        threads: onnxruntime intra-op threads (the predictions do not depend on it).

    Returns:
        A summary: ticks, degraded ticks, per-stage time percentiles (ms), what was skipped,
        ``complete``, ``problems`` and ``skipped_ranges`` of the log, and ``exit_code`` (0, or
        3 when the log is damaged or unfinished).

    Raises:
        StartupError: log missing, empty or not MCAP; ``out`` is the log, or holds data and
            ``overwrite`` is False; nothing to predict from.
    """
    if not path.is_file():
        raise StartupError(f"log not found: {path}")
    if out is not None:
        if out.resolve() == path.resolve():
            raise StartupError(f"--out {out} is the log being replayed; choose another file")
        if not overwrite and out.is_file() and out.stat().st_size:
            raise StartupError(f"--out {out} already exists ({out.stat().st_size} bytes); remove it first")
    try:
        log_summary = summarize_log(path)
    except LogError as e:
        raise StartupError(str(e)) from e
    pipe = build_offline_pipeline(path, model, log_summary, threads)
    first = log_summary.start_ns
    start_ns = None if start_s is None else first + int(start_s * 1e9)
    end_ns = None if end_s is None else first + int(end_s * 1e9)
    stats = ReadStats()
    writer = LogWriter(out, overwrite=overwrite) if out is not None else None
    if writer is not None:
        writer.add_metadata(CLOCK_METADATA, clock_anchor("capture"))
    stage: dict[str, list[int]] = {}
    n = 0
    first_tick_ns: int | None = None
    t0 = time.perf_counter()
    try:
        for res in iter_ticks(pipe, path, start_ns, end_ns, stats):
            n += 1
            if first_tick_ns is None:
                first_tick_ns = res.predictions.header.stamp_ns
            for k, v in res.predictions.timings_ns.items():
                stage.setdefault(k, []).append(v)
            if writer is not None:
                writer.write(res.tracks.to_message())
                writer.write(res.predictions)
            if on_tick is not None:
                on_tick(res)
        if writer is not None:
            _copy_context(writer, path, start_ns, end_ns, first_tick_ns)
    finally:
        if writer is not None:
            writer.close()
    wall = time.perf_counter() - t0
    return {
        "log": str(path),
        "mode": "tracks from log" if pipe.tracks_from_log else "tracker on sensor frames",
        "model": pipe.model_id,
        "map": pipe.map_id if pipe.map_id != NO_MAP_ID else "none (the log holds no map; map channels empty)",
        "map_changes": pipe.stats.map_changes,
        "ticks": n,
        "degraded_ticks": pipe.stats.degraded_ticks,
        "degraded_reasons": pipe.stats.degraded_reasons,
        "skipped": dict(stats.skipped),
        "tracker_rejected": dict(pipe.tracker.stats.rejected),
        "wall_s": round(wall, 3),
        "stages_ms_p50_p99": {
            k: [round(p["p50"], 3), round(p["p99"], 3)]
            for k, p in ((k, percentiles_ms(v)) for k, v in stage.items())
        },
        "out": str(out) if out else None,
        "complete": stats.complete,
        "problems": list(stats.problems),
        "skipped_ranges": [list(r) for r in stats.skipped_ranges],
        "exit_code": EXIT_DAMAGED if stats.problems else 0,
    }
