"""``Health.precision`` (schema 4): round trip, older payloads decode with "", the one builder sets it."""

from __future__ import annotations

import msgpack

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.service.liveness import Verdict, health_message
from tests.bus.samples import sample_message


def _health(precision: str) -> m.Health:
    return health_message(
        "prescient",
        123,
        "CPUExecutionProvider",
        Verdict("ok", ""),
        ticks=1,
        deadline_misses=0,
        rejected={},
        seq_gaps={},
        precision=precision,
    )


def test_precision_round_trips() -> None:
    msg = _health("int8")
    back = codec.decode(msg.header.topic, codec.encode(msg))
    assert back.precision == "int8" and back.provider == "CPUExecutionProvider"


def test_health_message_defaults_to_no_precision() -> None:
    msg = health_message(
        "track", 1, "cpu", Verdict("ok", ""), ticks=0, deadline_misses=0, rejected={}, seq_gaps={}
    )
    assert msg.precision == ""


def test_schema_3_payload_without_precision_decodes_with_empty_default() -> None:
    msg = sample_message(m.Health)
    d = msgpack.unpackb(codec.encode(msg), raw=False)
    del d["precision"]
    d["header"]["schema"] = 3
    old = codec.decode(msg.header.topic, msgpack.packb(d, use_bin_type=True))
    assert old.precision == "" and old.header.schema == 3
    assert m.added_fields(m.Health, 3) == {"precision": ""}
