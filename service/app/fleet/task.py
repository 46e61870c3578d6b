"""One log, as one Ray task: the single-machine offline replay, scored (no Ray in this module).

:func:`replay_and_score` is a plain function: the driver wraps it with ``ray.remote``, the tests
and ``prescient bench fleet`` call it directly, so the code under Ray is the code without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import resource
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from prescient.bus import codec
from prescient.bus.cli import log_totals
from prescient.bus.errors import StartupError
from prescient.bus.logfile import LogError
from prescient.bus.logsummary import summarize_log
from prescient.service.pipeline_types import TickResult

STATUS_OK, STATUS_DAMAGED, STATUS_FAILED = "ok", "damaged", "failed"


def predictions_digest_bytes(pred: Any) -> bytes:
    """The wire bytes of one ``Predictions`` without its wall-clock ``timings_ns`` and with
    ``header.seq`` 0 (a log writer numbers what it writes): all else is identical between two
    replays of one log, and between a fleet task and ``prescient replay --out``."""
    header = dataclasses.replace(pred.header, seq=0)
    return codec.encode(dataclasses.replace(pred, timings_ns={}, header=header))


class _TickLog:
    """Collects the digest of every tick's predictions and its processing time."""

    def __init__(self, scorer: Any) -> None:
        self.sha = hashlib.sha256()
        self.total_ms: list[float] = []
        self.scorer = scorer

    def __call__(self, res: TickResult) -> None:
        self.sha.update(predictions_digest_bytes(res.predictions))
        self.total_ms.append(res.total_ns / 1e6)
        self.scorer(res)


def replay_and_score(log_path: str, model: str | None) -> dict[str, Any]:
    """Replay one log exactly as ``prescient replay`` does and score it; never raises.

    Args:
        log_path: the MCAP log (absolute path, readable where the task runs).
        model: the ONNX model (manifest next to it), or None for the constant-velocity fallback.

    Returns:
        A JSON-able record: ``status`` (ok, damaged: read as far as it could be, failed: see
        ``error``), ``ticks``, ``degraded_ticks``, ``tick_ms`` (mean/p50/p99 processing time per
        tick, ms), ``predictions_sha256`` (every tick's predictions without timings),
        ``metrics`` (:meth:`LogScorer.summary`), ``truth``, ``wall_s``, ``node``, ``pid`` and
        ``max_rss_mb`` of the worker.
    """
    t0 = time.perf_counter()
    base: dict[str, Any] = {"log": log_path, "node": platform.node(), "pid": os.getpid()}
    try:
        rec = _run(Path(log_path), Path(model) if model else None)
    except StartupError as e:
        rec = {"status": STATUS_FAILED, "error": str(e)}
    except Exception as e:  # noqa: BLE001 - one log's crash is recorded; the fleet goes on
        last = traceback.extract_tb(e.__traceback__)[-1]
        rec = {
            "status": STATUS_FAILED,
            "error": f"{type(e).__name__}: {e} ({Path(last.filename).name}:{last.lineno})",
        }
    rec.update(base)
    rec["wall_s"] = round(time.perf_counter() - t0, 3)
    rec["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return rec


TASK_THREADS = 1


def _run(path: Path, model: Path | None) -> dict[str, Any]:
    from prescient.service.app.fleet.scoring import LogScorer, TruthIndex
    from prescient.service.offline import replay_log

    if not path.is_file():
        raise StartupError(f"log not found: {path}")
    totals = log_totals(path)  # from the MCAP summary, without reading the data
    if totals is None:  # unfinished or damaged: read it
        try:
            summary = summarize_log(path)
            topics, span_s = set(summary.topics), summary.duration_s
        except LogError as e:
            raise StartupError(str(e)) from e
    else:
        topics, span_s = set(totals[0]), totals[1]
    has_sensors = any(t.startswith("sensor.") for t in topics)
    truth = TruthIndex.from_log(path, tracks_from_log=not has_sensors)
    ticks = _TickLog(LogScorer(truth, same_ids=not has_sensors and truth.source != "sim.ground_truth"))
    # One core per task (ray.remote(num_cpus=1)): two onnxruntime threads per task would make
    # the workers of a machine fight over its cores.
    out = replay_log(path, model, on_tick=ticks, threads=TASK_THREADS)
    ms = np.array(ticks.total_ms) if ticks.total_ms else np.zeros(1)
    return {
        "status": STATUS_DAMAGED if out["exit_code"] else STATUS_OK,
        "error": "; ".join(out["problems"])[:500] if out["problems"] else "",
        "mode": out["mode"],
        "model": out["model"],
        "map": out["map"],
        "ticks": out["ticks"],
        "degraded_ticks": out["degraded_ticks"],
        "degraded_reasons": out["degraded_reasons"],
        "tick_ms": {
            "mean": round(float(ms.mean()), 3),
            "p50": round(float(np.percentile(ms, 50)), 3),
            "p99": round(float(np.percentile(ms, 99)), 3),
        },
        "log_span_s": round(span_s, 3),
        "predictions_sha256": ticks.sha.hexdigest(),
        "truth": truth.source,
        "metrics": ticks.scorer.summary(),
    }
