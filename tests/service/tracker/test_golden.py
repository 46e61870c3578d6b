"""Tracker output pinned on two seeded synthetic scenes (a refactor must not change it).

Each scene runs twice: publishing the committed tracks (``lookahead=False``: the tracks the
reorder window releases, which the look-ahead must never alter) and publishing the look-ahead.

The digests in ``data/golden_tracks.json`` hash every array of every published
:class:`~prescient.bus.messages.Tracks` (floats rounded to 1e-4, so a last-bit difference between CPUs does
not count) plus the final counters. A deliberate change of tracker behaviour or of the synthetic
scenes regenerates them:

    PRESCIENT_REGEN_GOLDEN=1 .venv/bin/pytest tests/service/tracker/test_golden.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.service.app.tracking.runner import TickDriver
from prescient.service.app.tracking.synthetic import SyntheticScene
from prescient.service.tracker import Tracker, TrackerConfig

GOLDEN = Path(__file__).parent / "data" / "golden_tracks.json"


def _digest(tracks: m.Tracks) -> str:
    d = hashlib.sha256(str(tracks.header.stamp_ns).encode())
    for f in dataclasses.fields(tracks):
        a = getattr(tracks, f.name)
        if not isinstance(a, np.ndarray):
            continue
        if a.dtype.kind == "f":
            a = np.round(a.astype(np.float64), 4) + 0.0  # + 0.0: -0.0 and 0.0 hash alike
        d.update(f.name.encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes())
    return d.hexdigest()[:16]


NAMES = ("clean", "shuffled", "clean_lookahead", "shuffled_lookahead")


def _stream(name: str) -> list:
    """The scene's messages: clean, or shuffled within ~2 ticks with some dropped and repeated."""
    clean = name.startswith("clean")
    scene = SyntheticScene(n_agents=30, seed=0) if clean else SyntheticScene(n_agents=40, seed=4)
    msgs = [x for _ in range(40) for x in scene.step()]
    if clean:
        return msgs
    rng = np.random.default_rng(1)
    keyed = []
    for i, x in enumerate(msgs):
        r = rng.uniform()
        if r < 0.03:
            continue
        keyed.append((i + rng.uniform(0, 30), x))
        if r > 0.97:
            keyed.append((i + rng.uniform(0, 40), x))
    return [x for _, x in sorted(keyed, key=lambda k: k[0])]


def _run(name: str) -> dict:
    lookahead = name.endswith("_lookahead")
    cfg = TrackerConfig(capacity=48 if name.startswith("shuffled") else 512, lookahead=lookahead)
    tracker = Tracker(cfg)
    ticks = [_digest(t) for t in TickDriver(tracker).run(_stream(name))]
    return {
        "ticks": ticks,
        "counters": dict(sorted(tracker.stats.counters.items())),
        "rejected": dict(sorted(tracker.stats.rejected.items())),
    }


def _regenerate() -> None:
    GOLDEN.write_text(json.dumps({n: _run(n) for n in NAMES}, indent=1) + "\n")


@pytest.mark.parametrize("name", NAMES)
def test_tracker_pinned_scene_output_unchanged(name: str) -> None:
    """Every tick's tracks and the final counters equal the pinned ones."""
    if os.environ.get("PRESCIENT_REGEN_GOLDEN"):
        _regenerate()
    golden = json.loads(GOLDEN.read_text())[name]
    got = _run(name)
    assert got["counters"] == golden["counters"]
    assert got["rejected"] == golden["rejected"]
    first = next((i for i, (a, b) in enumerate(zip(got["ticks"], golden["ticks"])) if a != b), None)
    assert first is None, f"{name}: tracks differ from tick {first} on"
    assert len(got["ticks"]) == len(golden["ticks"])
