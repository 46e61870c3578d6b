"""Codec round trips for every message type and garbage that must be rejected by field."""

from __future__ import annotations

import dataclasses

import msgpack
import numpy as np
import pytest

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.bus.errors import DecodeError, EncodeError
from tests.bus.samples import assert_msg_equal, sample_message

ALL_TYPES = sorted(m.MESSAGE_TYPES.values(), key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
def test_roundtrip_every_message_type_is_exact(cls: type) -> None:
    """encode -> decode returns an equal message with read-only, zero-copy arrays."""
    msg = sample_message(cls)
    payload = codec.encode(msg)
    out = codec.decode(msg.header.topic, payload)
    assert_msg_equal(msg, out)
    for name in m.array_specs(cls):
        assert not getattr(out, name).flags.writeable


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
def test_roundtrip_empty_messages(cls: type) -> None:
    """Messages with every variable dimension 0 survive the round trip."""
    msg = sample_message(cls, n=0)
    assert_msg_equal(msg, codec.decode(msg.header.topic, codec.encode(msg)))


def _wire(msg: object) -> dict:
    return msgpack.unpackb(codec.encode(msg), raw=False)


def _pack(d: dict) -> bytes:
    return msgpack.packb(d, use_bin_type=True)


def _expect(topic: str, payload: bytes, field: str, words: str) -> DecodeError:
    with pytest.raises(DecodeError) as ei:
        codec.decode(topic, payload)
    err = ei.value
    assert err.topic == topic
    assert err.field == field, str(err)
    assert words in err.reason, str(err)
    return err


TRACKS = sample_message(m.Tracks)
T = m.TOPIC_TRACKS


def test_decode_truncated_bytes_raises() -> None:
    payload = codec.encode(TRACKS)
    _expect(T, payload[: len(payload) // 2], "", "not msgpack")


def test_decode_not_a_map_raises() -> None:
    _expect(T, msgpack.packb([1, 2, 3]), "", "expected map")


def test_decode_random_garbage_never_escapes_as_other_error(rng: np.random.Generator) -> None:
    """Random bytes and bit flips raise DecodeError only (or decode to a valid message)."""
    payload = bytearray(codec.encode(TRACKS))
    for _ in range(300):
        junk = bytearray(payload)
        for i in rng.integers(0, len(junk), size=3):
            junk[i] = int(rng.integers(0, 256))
        try:
            codec.decode(T, bytes(junk))
        except DecodeError:
            pass
    for size in (0, 1, 7, 100):
        with pytest.raises(DecodeError):
            codec.decode(T, rng.integers(0, 256, size=size, dtype=np.uint8).tobytes())


def test_decode_unknown_type_raises() -> None:
    d = _wire(TRACKS)
    d["type"] = "Nope"
    _expect(T, _pack(d), "type", "unknown message type")


def test_decode_type_not_allowed_on_topic_raises() -> None:
    ego = sample_message(m.EgoState)
    payload = codec.encode(dataclasses.replace(ego, header=dataclasses.replace(ego.header, topic=T)))
    _expect(T, payload, "type", "not allowed on this topic")


def test_decode_wrong_schema_version_raises() -> None:
    d = _wire(TRACKS)
    d["header"]["schema"] = m.SCHEMA_VERSION + 1
    _expect(T, _pack(d), "header.schema", "schema version")


def test_decode_header_topic_mismatch_raises() -> None:
    _expect("perception.other", codec.encode(TRACKS), "header.topic", "differs")


def test_decode_negative_seq_raises() -> None:
    d = _wire(TRACKS)
    d["header"]["seq"] = -1
    _expect(T, _pack(d), "header.seq", "non-negative")


def test_decode_extra_key_raises() -> None:
    d = _wire(TRACKS)
    d["surprise"] = 1
    _expect(T, _pack(d), "surprise", "unexpected keys")


def test_decode_missing_key_raises() -> None:
    d = _wire(TRACKS)
    del d["yaw_rad"]
    _expect(T, _pack(d), "yaw_rad", "missing keys")


def test_decode_wrong_dtype_raises() -> None:
    d = _wire(TRACKS)
    a = np.zeros(5, np.float64)
    d["yaw_rad"] = {"dtype": a.dtype.str, "shape": [5], "data": a.tobytes()}
    _expect(T, _pack(d), "yaw_rad", "dtype <f8, expected <f4")


def test_decode_object_dtype_refused() -> None:
    d = _wire(TRACKS)
    d["yaw_rad"] = {"dtype": "|O", "shape": [5], "data": b"\0" * 40}
    _expect(T, _pack(d), "yaw_rad", "not allowed")


def test_decode_wrong_shape_raises() -> None:
    d = _wire(TRACKS)
    a = np.zeros((5, 3), np.float32)
    d["position_m"] = {"dtype": a.dtype.str, "shape": [5, 3], "data": a.tobytes()}
    _expect(T, _pack(d), "position_m", "expected ['N', 2]")


def test_decode_inconsistent_lengths_raises() -> None:
    d = _wire(TRACKS)
    a = np.zeros(4, np.float32)
    d["yaw_rad"] = {"dtype": a.dtype.str, "shape": [4], "data": a.tobytes()}
    _expect(T, _pack(d), "yaw_rad", "inconsistent length")


def test_decode_data_size_mismatch_raises() -> None:
    d = _wire(TRACKS)
    d["yaw_rad"]["data"] = d["yaw_rad"]["data"][:-4]
    _expect(T, _pack(d), "yaw_rad", "do not match shape")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decode_nonfinite_array_raises(bad: float) -> None:
    d = _wire(TRACKS)
    a = np.zeros(5, np.float32)
    a[2] = bad
    d["yaw_rad"] = {"dtype": a.dtype.str, "shape": [5], "data": a.tobytes()}
    _expect(T, _pack(d), "yaw_rad", "NaN or inf")


def test_decode_nonfinite_scalar_raises() -> None:
    msg = sample_message(m.PlannerStatus)
    d = _wire(msg)
    d["min_ttc_s"] = float("nan")
    _expect(msg.header.topic, _pack(d), "min_ttc_s", "NaN or inf")


def test_decode_wrong_scalar_type_raises() -> None:
    msg = sample_message(m.Predictions)
    d = _wire(msg)
    d["degraded"] = 1
    _expect(msg.header.topic, _pack(d), "degraded", "expected bool")
    d = _wire(msg)
    d["timings_ns"] = {"track": 1.5}
    _expect(msg.header.topic, _pack(d), "timings_ns", "str -> int")


def test_decode_broken_csr_offsets_raise() -> None:
    msg = sample_message(m.VectorMap)
    d = _wire(msg)
    o = np.array([0, 3, 2, 4, 5, 5], np.int64)
    d["centerline_offsets"] = {"dtype": o.dtype.str, "shape": [6], "data": o.tobytes()}
    _expect(m.TOPIC_MAP, _pack(d), "centerline_offsets", "not decrease")


def test_decode_oversized_payload_raises() -> None:
    big = sample_message(m.LidarFrame, n=1000)
    payload = codec.encode(big)
    with pytest.raises(DecodeError, match="exceeds limit"):
        codec.decode(big.header.topic, payload, max_bytes=len(payload) - 1)
    assert codec.decode(big.header.topic, payload, max_bytes=len(payload)) is not None


def test_decode_huge_declared_shape_raises() -> None:
    """A shape claiming 10^12 elements with a tiny buffer is rejected, not allocated."""
    d = _wire(TRACKS)
    d["yaw_rad"] = {"dtype": "<f4", "shape": [10**12], "data": b"\0" * 8}
    _expect(T, _pack(d), "yaw_rad", "do not match shape")


def test_encode_rejects_nan_and_wrong_dtype() -> None:
    bad = dataclasses.replace(TRACKS, yaw_rad=np.full(5, np.nan, np.float32))
    with pytest.raises(EncodeError, match="yaw_rad"):
        codec.encode(bad)
    bad = dataclasses.replace(TRACKS, yaw_rad=np.zeros(5, np.float64))
    with pytest.raises(EncodeError, match="yaw_rad"):
        codec.encode(bad)


def test_encode_big_endian_array_refused() -> None:
    """The wire is little endian; a big-endian array is a dtype mismatch, not silently swapped."""
    be = dataclasses.replace(TRACKS, yaw_rad=np.arange(5, dtype=">f4"))
    with pytest.raises(EncodeError, match="yaw_rad"):
        codec.encode(be)


def test_every_topic_constant_maps_to_a_type() -> None:
    for t in (*m.SENSOR_TOPICS, m.TOPIC_TRACKS, m.TOPIC_PREDICTIONS, m.TOPIC_MAP, m.health_topic("svc")):
        assert m.topic_type(t) is not None, t
    assert len(set(m.SENSOR_TOPICS)) == 16


def _reference_payload(msg: object) -> bytes:
    """The documented wire format, packed the plain way (``msgpack.packb``, arrays as bytes)."""
    h = msg.header  # type: ignore[attr-defined]
    wire: dict = {"type": type(msg).__name__, "header": {k: getattr(h, k) for k in codec._HEADER_KEYS}}
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        if f.name == "header":
            continue
        v = getattr(msg, f.name)
        if "array" in f.metadata:
            a = np.ascontiguousarray(v)
            v = {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}
        wire[f.name] = v
    return msgpack.packb(wire, use_bin_type=True)


@pytest.mark.parametrize("n", [0, 3])
@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
def test_kept_packer_writes_the_same_bytes_as_plain_msgpack(cls: type, n: int) -> None:
    """The per-thread packer and zero-copy array views change no byte on the wire or in logs."""
    msg = sample_message(cls, n=n)
    assert codec.encode(msg) == _reference_payload(msg)


def test_non_contiguous_arrays_encode_as_their_c_order_copy() -> None:
    xy = np.arange(10, dtype=np.float32).reshape(2, 5).T  # (5, 2), Fortran order
    msg = dataclasses.replace(TRACKS, position_m=xy)
    out = codec.decode(msg.header.topic, codec.encode(msg))
    np.testing.assert_array_equal(out.position_m, xy)


def test_a_failed_pack_leaves_the_packer_clean() -> None:
    """An unpackable value (only possible with check=False) raises, and the next message is exact."""
    good = codec.encode(TRACKS)
    health = sample_message(m.Health)
    bad = dataclasses.replace(health, rejected={"x": object()})
    with pytest.raises(TypeError):
        codec.encode(bad, check=False)
    assert codec.encode(TRACKS) == good

