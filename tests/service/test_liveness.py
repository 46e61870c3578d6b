"""Liveness verdicts from made-up monotonic times: what health says when production stops."""

from __future__ import annotations

from prescient.service.liveness import Liveness, LivenessConfig

S = 1_000_000_000
MS = 1_000_000


def _running(live: Liveness, until_ns: int, *, start_ns: int = 0, fallback_every: int = 0) -> None:
    """Inputs every 50 ms and a tick every 100 ms from ``start_ns`` to ``until_ns``."""
    k = 0
    for t in range(start_ns, until_ns + 1, 50 * MS):
        live.note_input("ego", t)
        live.note_input("sensors", t)
        if t % (100 * MS) == 0:
            k += 1
            live.note_tick(t, degraded=bool(fallback_every) and k % fallback_every == 0)


def test_ok_while_producing_at_10_hz() -> None:
    live = Liveness(("ego", "sensors"))
    _running(live, 5 * S)
    v = live.verdict(5 * S + 20 * MS)
    assert v.state == "ok" and v.reason == ""
    assert 9_500 <= v.live["tick_rate_mhz"] <= 10_500 and v.live["model_share_permille"] == 1000


def test_degraded_within_one_second_of_inputs_stopping_then_failed() -> None:
    live = Liveness(("ego", "sensors"))
    _running(live, 5 * S)
    assert live.verdict(5 * S + 150 * MS).state == "ok"
    v = live.verdict(5 * S + 600 * MS)  # nothing since 5 s: inputs 0.6 s old
    assert v.state == "degraded" and "ego input" in v.reason and "sensors input" in v.reason
    v = live.verdict(7 * S + 100 * MS)
    assert v.state == "failed" and "no input on ego, sensors" in v.reason
    assert v.live["prediction_age_ms"] == 2100


def test_one_dead_input_group_is_enough() -> None:
    live = Liveness(("ego", "sensors"))
    for t in range(0, 5 * S, 50 * MS):
        live.note_input("sensors", t)  # the ego state never arrives
        if t % (100 * MS) == 0:
            live.note_tick(t, degraded=False)
    assert live.verdict(5 * S).state == "failed"


def test_slow_ticks_and_fallback_share_degrade() -> None:
    live = Liveness(("ego", "sensors"))
    for t in range(0, 5 * S, 200 * MS):  # 5 Hz
        live.note_input("ego", t)
        live.note_input("sensors", t)
        live.note_tick(t, degraded=False)
    v = live.verdict(5 * S - 100 * MS)
    assert v.state == "degraded" and "tick rate" in v.reason
    live = Liveness(("ego", "sensors"))
    _running(live, 5 * S, fallback_every=5)  # 20 % on the fallback
    v = live.verdict(5 * S + 10 * MS)
    assert v.state == "degraded" and "fallback" in v.reason and v.live["model_share_permille"] == 800


def test_no_model_is_degraded_and_startup_is_not_failed_early() -> None:
    live = Liveness(("tracks",), LivenessConfig(), start_ns=10 * S)
    assert live.verdict(10 * S + 100 * MS).state == "ok"  # just started: nothing is late yet
    assert live.verdict(10 * S + 100 * MS, model_loaded=False).reason == "no model"
    assert live.verdict(12 * S + 100 * MS).state == "failed"
