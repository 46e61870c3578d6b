"""The driver of ``prescient fleet replay``: what is left to do, one Ray task per log, records, outputs.

Resumable: every finished log's record is written to ``DIR/logs/<key>.json`` (atomically) as
soon as its task returns; a re-run skips each log whose record matches the log file (size,
mtime) and the model (sha256), and redoes failed ones. When nothing is left to do, Ray is not
started at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prescient.service.app.fleet.logs import log_fingerprint, log_key
from prescient.service.app.fleet.ray_session import ray_session
from prescient.service.app.fleet.store import read_record, record_path, write_json_atomic
from prescient.service.app.fleet.task import STATUS_FAILED, replay_and_score

TASK_MAX_RETRIES = 1  # a worker that dies (OOM, segfault) is retried once, then the log is failed


@dataclass(frozen=True)
class ReplayJob:
    """What ``fleet replay`` was asked: logs, model (None: the fallback), output folder, where to run.

    ``num_cpus``: workers of a local instance (None: every core); ignored with ``address``.
    """

    logs: tuple[Path, ...]
    model: Path | None
    out_dir: Path
    address: str | None = None
    num_cpus: int | None = None


def model_sha256(model: Path | None) -> str:
    """sha256 of the model file, or ``none`` for the fallback."""
    if model is None:
        return "none"
    h = hashlib.sha256()
    with open(model, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(rec: dict[str, Any], path: Path, model_sha: str) -> dict[str, Any]:
    """``rec`` with what identifies its inputs: key, absolute log path, file fingerprint, model sha."""
    return {
        **rec,
        "key": log_key(path),
        "log": str(path),
        "input": log_fingerprint(path),
        "model_sha256": model_sha,
    }


def pending_logs(job: ReplayJob, model_sha: str) -> tuple[list[Path], list[dict[str, Any]]]:
    """Split ``job.logs`` into those to run and the records of those already done (same inputs)."""
    todo: list[Path] = []
    done: list[dict[str, Any]] = []
    for p in job.logs:
        rec = read_record(record_path(job.out_dir, log_key(p)))
        same = (
            rec is not None
            and rec.get("status") != STATUS_FAILED
            and rec.get("input") == log_fingerprint(p)
            and rec.get("model_sha256") == model_sha
        )
        if same and rec is not None:
            done.append(rec)
        else:
            todo.append(p)
    return todo, done


def _ray_task(log_path: str, model: str | None) -> dict[str, Any]:
    """:func:`replay_and_score` plus the id of the Ray node that ran it (runs inside a Ray worker)."""
    import ray

    rec = replay_and_score(log_path, model)
    rec["ray_node_id"] = ray.get_runtime_context().get_node_id()
    return rec


def run_replay(
    job: ReplayJob, on_done: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Replay and score every log of ``job`` (skipping those done), one Ray task each.

    Args:
        job: the logs, model, output folder and where to run.
        on_done: called with each record as it is stored (progress), including skipped ones.

    Returns:
        One record per log, in ``job.logs`` order.

    Raises:
        StartupError: Ray cannot start or the cluster is unreachable (nothing is written then).
    """
    sha = model_sha256(job.model)
    todo, done = pending_logs(job, sha)
    by_log = {rec["log"]: rec for rec in done}
    for rec in done:
        if on_done is not None:
            on_done(rec)
    if todo:
        with ray_session(job.address, job.num_cpus) as ray:
            remote = ray.remote(num_cpus=1, max_retries=TASK_MAX_RETRIES)(_ray_task)
            model = str(job.model.absolute()) if job.model is not None else None
            pending = {remote.remote(str(p), model): p for p in todo}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                path = pending.pop(ready[0])
                try:
                    rec = ray.get(ready[0])
                except ray.exceptions.RayError as e:  # the worker died: record it, go on
                    rec = {"status": STATUS_FAILED, "error": f"Ray task failed: {str(e).splitlines()[0]}"}
                rec = _stamp(rec, path, sha)
                write_json_atomic(record_path(job.out_dir, rec["key"]), rec)
                by_log[rec["log"]] = rec
                if on_done is not None:
                    on_done(rec)
    return [by_log[str(p)] for p in job.logs]
