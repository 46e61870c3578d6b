"""Predictions.agent_source (schema 5): per-agent provenance on the wire; older payloads decode."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from prescient.bus import codec
from prescient.bus import messages as m


def _pred(n: int = 3) -> m.Predictions:
    return m.empty(
        m.Predictions, m.TOPIC_PREDICTIONS,
        track_id=np.arange(n, dtype=np.int64), class_id=np.zeros(n, np.int32),
        mode_probs=np.full((n, 1), 1.0, np.float32), trajectories_m=np.zeros((n, 1, 2, 2), np.float32),
        scale_m=np.ones((n, 1, 2, 2), np.float32),
        agent_source=np.array([0, 1, 0], np.uint8)[:n],
    )  # fmt: skip


def test_agent_source_round_trips() -> None:
    got = codec.decode(m.TOPIC_PREDICTIONS, codec.encode(_pred()))
    np.testing.assert_array_equal(got.agent_source, [0, 1, 0])


def test_a_schema_4_payload_without_it_decodes_as_unknown() -> None:
    """A log recorded before schema 5 replays: agent_source is filled, sized by the other fields."""
    raw = msgpack.unpackb(codec.encode(_pred()), raw=False)
    del raw["agent_source"]
    raw["header"]["schema"] = 4
    got = codec.decode(m.TOPIC_PREDICTIONS, msgpack.packb(raw, use_bin_type=True))
    np.testing.assert_array_equal(got.agent_source, [m.AgentSource.UNKNOWN] * 3)


def test_a_schema_5_payload_must_carry_it() -> None:
    raw = msgpack.unpackb(codec.encode(_pred()), raw=False)
    del raw["agent_source"]
    with pytest.raises(codec.DecodeError, match="missing keys"):
        codec.decode(m.TOPIC_PREDICTIONS, msgpack.packb(raw, use_bin_type=True))


def test_its_length_must_match_the_agents() -> None:
    raw = msgpack.unpackb(codec.encode(_pred()), raw=False)
    bad = _pred()
    raw["agent_source"] = msgpack.unpackb(codec.encode(bad), raw=False)["agent_source"]
    raw["track_id"] = msgpack.unpackb(codec.encode(_pred(2)), raw=False)["track_id"]
    with pytest.raises(codec.DecodeError):
        codec.decode(m.TOPIC_PREDICTIONS, msgpack.packb(raw, use_bin_type=True))
