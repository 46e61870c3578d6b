"""Helpers for the recorder / replayer / importer tests: bus config on ipc://, sample logs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import zmq

from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.bus.logfile import LogWriter
from tests.bus.samples import sample_message

# Every concrete type that has a fixed topic (one message of each in the sample log).
SAMPLE_TYPES = (
    m.CameraFrame,
    m.LwirFrame,
    m.LidarFrame,
    m.RadarFrame,
    m.EgoState,
    m.GroundTruth,
    m.VectorMap,
    m.TrafficLights,
    m.Tracks,
    m.Predictions,
    m.PlannerStatus,
    m.Health,
)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def cfg(ipc_endpoints) -> BusConfig:
    return BusConfig(pub_endpoint=ipc_endpoints("pub"), sub_endpoint=ipc_endpoints("sub"), poll_ms=20)


def sample_stream(n_rounds: int = 5, dt_ns: int = 10_000_000) -> list:
    """``n_rounds`` x one message of each sample type, stamps increasing by ``dt_ns``."""
    out = []
    t = 1_000_000_000
    for r in range(n_rounds):
        for i, cls in enumerate(SAMPLE_TYPES):
            msg = sample_message(cls, seed=r * 100 + i, n=3 + r)
            msg = dataclasses.replace(msg, header=dataclasses.replace(msg.header, stamp_ns=t, seq=r))
            out.append(msg)
            t += dt_ns
    return out


def write_sample_log(path: Path, n_rounds: int = 5, chunk_bytes: int = 16 * 1024) -> list[tuple[str, bytes]]:
    """Write a sample log; return the ``(topic, payload)`` list in write order."""
    written = []
    with LogWriter(path, chunk_bytes=chunk_bytes, stamp_seq=False) as w:
        for msg in sample_stream(n_rounds):
            written.append((msg.header.topic, w.write(msg)))
    return written
