"""Prometheus metrics of the service (prescient.service.metrics): families, bounded labels, endpoint."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from prescient.bus import messages as m
from prescient.bus.errors import StartupError
from prescient.bus.rxstats import RxStats
from prescient.service.gc_policy import GcPauses
from prescient.service.metrics import MAX_REASONS, OTHER, ServiceMetrics
from prescient.service.pipeline_types import PipelineStats

REPO = Path(__file__).resolve().parents[1]
EGO_TOPIC = m.TOPIC_EGO
LIDAR_TOPIC = m.sensor_topic(m.Modality.LIDAR, m.Corner.FRONT_LEFT)


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``family sample name -> {sorted labels: value}`` of http://127.0.0.1:port/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


@pytest.fixture
def metrics() -> Iterator[ServiceMetrics]:
    mx = ServiceMetrics()
    mx.serve("127.0.0.1", 0)
    yield mx
    mx.close()


def _stats(received: dict[str, int], rejected: dict[str, int]) -> RxStats:
    rx = RxStats()
    for k, n in received.items():
        rx.received.add(k, n)
    for k, n in rejected.items():
        rx.rejected.add(k, n)
    return rx


def _update(mx: ServiceMetrics, rx: RxStats, pipe: PipelineStats, state: str = "ok") -> None:
    mx.update_counts([rx], RxStats(), {"?:too_many_objects": 2}, {"hwm_drops": 0}, pipe, state)


def test_metrics_endpoint_serves_every_family_and_counts_move(metrics: ServiceMetrics) -> None:
    """Scraped over HTTP: histograms, per-topic and per-reason counters, provider; a second scrape grows."""
    metrics.set_provider("CPUExecutionProvider", "int8", "prescient-test")
    metrics.note_ego(stamp_ns=1_000_000_000, recv_mono_ns=5_000_000_000)
    pred = m.empty(
        m.Predictions, m.TOPIC_PREDICTIONS, source_stamp_ns=1_000_000_000, source_sent_mono_ns=5_010_000_000
    )
    metrics.observe_tick(pred, total_ns=20_000_000, published_mono_ns=5_060_000_000)
    pipe = PipelineStats(ticks=1)
    pipe.degraded("model over budget: expected 80 ms, 10 ms left")
    rx = _stats({EGO_TOPIC: 10, LIDAR_TOPIC: 20}, {f"{LIDAR_TOPIC}:not_msgpack": 3})
    _update(metrics, rx, pipe)

    first = scrape(metrics.port or 0)
    assert value(first, "prescient_tick_seconds_count") == 1
    assert value(first, "prescient_tick_seconds_sum") == pytest.approx(0.02)
    assert value(first, "prescient_processing_latency_seconds_sum") == pytest.approx(0.05)
    assert value(first, "prescient_data_age_seconds_sum") == pytest.approx(0.06)  # captured at 5.0 s mono
    assert value(first, "prescient_messages_received_total", topic=LIDAR_TOPIC) == 20
    assert value(first, "prescient_messages_rejected_total", stage="input", reason="not_msgpack") == 3
    assert value(first, "prescient_messages_rejected_total", stage="tracker", reason="too_many_objects") == 2
    assert value(first, "prescient_degraded_ticks_total", reason="model over budget") == 1
    assert value(first, "prescient_health_state", state="ok") == 1
    info = {"provider": "CPUExecutionProvider", "precision": "int8", "model": "prescient-test"}
    assert value(first, "prescient_provider_info", **info) == 1

    rx.received.add(EGO_TOPIC, 5)
    pipe.ticks += 1
    metrics.observe_tick(pred, total_ns=30_000_000, published_mono_ns=5_070_000_000)
    _update(metrics, rx, pipe, state="failed")
    second = scrape(metrics.port or 0)
    assert value(second, "prescient_messages_received_total", topic=EGO_TOPIC) == 15
    assert value(second, "prescient_ticks_total") == 2 and value(second, "prescient_tick_seconds_count") == 2
    assert value(second, "prescient_health_state", state="failed") == 1
    assert value(second, "prescient_health_state", state="ok") == 0


def test_metrics_garbage_collections_per_generation(metrics: ServiceMetrics) -> None:
    """The service's timed collections (gc_policy.GcPauses) are exported per generation."""
    pauses = GcPauses()
    pauses.count[:] = [40, 3, 1]
    pauses.total_ns[:] = [4_000_000, 900_000, 80_000_000]
    pauses.max_ns[:] = [200_000, 400_000, 80_000_000]
    metrics.update_counts([RxStats()], None, {}, {}, PipelineStats(), "ok", pauses)
    got = scrape(metrics.port or 0)
    assert value(got, "prescient_gc_collections_total", generation="0") == 40
    assert value(got, "prescient_gc_collections_total", generation="2") == 1
    assert value(got, "prescient_gc_pause_seconds_total", generation="1") == pytest.approx(0.0009)
    assert value(got, "prescient_gc_pause_max_seconds", generation="2") == pytest.approx(0.08)
    with pauses.install():  # real collections move the next snapshot
        gc.collect(2)
    metrics.update_counts([RxStats()], None, {}, {}, PipelineStats(), "ok", pauses)
    assert value(scrape(metrics.port or 0), "prescient_gc_collections_total", generation="2") >= 2


def test_metrics_unknown_topics_and_reasons_collapse_to_other(metrics: ServiceMetrics) -> None:
    """A sender cannot grow the label set: unknown topics, odd or too many reasons count as "other"."""
    received = {f"spam.{i}": 1 for i in range(300)}
    rejected = {f"spam.{i}:reason_{i}": 1 for i in range(MAX_REASONS + 10)}
    rejected["x:bad\nreason{}"] = 1
    _update(metrics, _stats(received, rejected), PipelineStats())
    got = scrape(metrics.port or 0)
    assert set(got["prescient_messages_received_total"]) == {(("topic", OTHER),)}
    assert value(got, "prescient_messages_received_total", topic=OTHER) == 300
    reasons = {dict(k)["reason"] for k in got["prescient_messages_rejected_total"]}
    assert len(reasons) <= MAX_REASONS + 1 and OTHER in reasons
    assert sum(got["prescient_messages_rejected_total"].values()) == MAX_REASONS + 10 + 1 + 2


def test_metrics_no_source_input_observes_tick_only(metrics: ServiceMetrics) -> None:
    """Before any input was applied (source stamps 0) only the tick time is observed."""
    metrics.observe_tick(m.empty(m.Predictions, m.TOPIC_PREDICTIONS), 1_000_000, 2_000_000)
    got = scrape(metrics.port or 0)
    assert value(got, "prescient_tick_seconds_count") == 1
    assert value(got, "prescient_processing_latency_seconds_count") == 0
    assert value(got, "prescient_data_age_seconds_count") == 0


def test_metrics_port_in_use_raises_startup_error() -> None:
    """A port already bound is a StartupError naming the address, not a traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(StartupError, match=f"127.0.0.1:{port} cannot be bound"):
            ServiceMetrics().serve("127.0.0.1", port)


def test_serve_metrics_port_in_use_exits_1_with_one_line() -> None:
    """`prescient serve --metrics-port P` with P taken: exit 1, one line, before any model loads."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "prescient.service", "serve", "--no-model", "--metrics-port", str(port)]
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0] and "Traceback" not in res.stderr


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_serve_bad_metrics_port_exits_2(port: str) -> None:
    """A port outside 0-65535 is a usage error."""
    from prescient.service.app.cli import main

    with pytest.raises(SystemExit) as e:
        main(["serve", "--metrics-port", port])
    assert e.value.code == 2
