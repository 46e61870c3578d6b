"""The smoke test's verdict: a stack that predicts slowly, degraded or late does not pass."""

from __future__ import annotations

from prescient.service.app.healthcheck import flow_failures, main


def _report(**over: object) -> dict:
    r = {
        "predictions": 200,
        "rate_hz": 10.0,
        "degraded": 0,
        "degraded_reasons": {},
        "nonfinite": 0,
        "planner_statuses": 190,
        "e2e_ms": {"p50": 40.0, "p95": 60.0, "p99": 70.0, "max": 90.0},
    }
    r.update(over)
    return r


TARGETS = {"min_rate_hz": 9.0, "max_degraded_share": 0.05, "p99_budget_ms": 100.0}


def test_a_healthy_run_passes() -> None:
    assert flow_failures(_report(), **TARGETS) == []


def test_the_run_that_used_to_pass_fails_for_three_reasons() -> None:
    """3.6 Hz, 58 of 72 degraded, p99 579 ms: each target names itself."""
    bad = _report(
        predictions=72,
        rate_hz=3.6,
        degraded=58,
        degraded_reasons={"model over budget": 58},
        e2e_ms={"p50": 300.0, "p95": 500.0, "p99": 579.0, "max": 700.0},
    )
    why = flow_failures(bad, **TARGETS)
    assert len(why) == 3
    assert "3.6 Hz < 9 Hz" in why[0] and "58 of 72" in why[1] and "579.0 ms > budget 100 ms" in why[2]
    assert flow_failures(bad) == []  # without targets only flow itself is checked


def test_missing_latency_or_verdicts_fail() -> None:
    nan = float("nan")
    why = flow_failures(
        _report(planner_statuses=0, e2e_ms={"p50": nan, "p95": nan, "p99": nan, "max": nan}), **TARGETS
    )
    assert why == ["no planner verdicts", "end-to-end p99 nan ms > budget 100 ms"]


def test_flow_exits_unhealthy_with_nothing_on_the_bus(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("PRESCIENT_BUS", f"ipc://{tmp_path}/nobus")
    assert main(["flow", "--duration-s", "0.3", "--min-rate-hz", "9"]) == 1
    out = capsys.readouterr().out
    assert '"failures": ["0 predictions < 10"' in out
