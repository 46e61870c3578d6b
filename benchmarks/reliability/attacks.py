"""Hostile bus traffic for ``prescient bench reliability``: pure functions, no sockets, no clock.

Every generator returns :class:`Frame` objects (the raw topic frame and payload a plain
``zmq.PUB`` socket sends) or, for the request/reply endpoints, lists of frames. Valid messages
are built with the :mod:`prescient.bus.messages` dataclasses and :func:`prescient.bus.codec.encode`; mutations work
on the msgpack wire map (``{"type", "header", <field>: ...}``, arrays as
``{"dtype", "shape", "data"}``) and repack it, so each hostile frame is exactly what it claims to
be (tests/test_reliability_attacks.py checks that).

Randomness comes from the ``numpy.random.Generator`` passed in: same seed, same frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, Final

import msgpack
import numpy as np

from prescient.bus import codec
from prescient.bus import messages as m

# Topics the prediction service subscribes to (its inputs): what the payload attacks aim at.
SUBSCRIBED_TOPICS: Final = (*m.SENSOR_TOPICS, m.TOPIC_EGO, m.TOPIC_TRAFFIC_LIGHTS)
UINT64_MAX: Final = 2**64 - 1
OVERFLOW_SHAPE: Final = [UINT64_MAX, 2]  # rows * 2 wraps to -2 in int64 arithmetic
HUGE_TOPIC_BYTES: Final = 1_100_000  # 1.1 MB topic name
OVERSIZED_BYTES: Final = 70_000_000  # over the bus's default max_bytes (64 MiB)
MALFORMED_KINDS: Final = (
    "random_bytes",
    "truncated",
    "wrong_type",
    "nan_array",
    "shape_overflow",
    "schema_true",
    "huge_int",
    "msgpack_bomb",
    "deep_nesting",
    "object_dtype",
)
# A map32 header announcing 2**32 - 1 entries followed by almost nothing: an unpacker that
# pre-allocates would ask for gigabytes.
MSGPACK_BOMB: Final = b"\xdf\xff\xff\xff\xff\xa1a\xc0"


@dataclasses.dataclass(frozen=True)
class Frame:
    """One two-part bus frame as sent on the wire.

    Attributes:
        topic: the topic frame (bytes: may be non-UTF-8 or 1.1 MB long).
        payload: the message frame.
        kind: which generator made it (for counting).
    """

    topic: bytes
    payload: bytes
    kind: str


# ----------------------------------------------------------------------------------------------
# Valid messages.
# ----------------------------------------------------------------------------------------------
def _mount(x_m: float = 1.0) -> np.ndarray:
    """(4, 4) float64 ego_from_sensor: sensor at ``x_m`` ahead of the rear axle, no rotation."""
    e = np.eye(4)
    e[0, 3] = x_m
    return e


def _header(topic: str, seq: int, stamp_ns: int, sent_mono_ns: int = 0) -> m.Header:
    return m.Header(topic=topic, seq=seq, stamp_ns=stamp_ns, sent_mono_ns=sent_mono_ns)


def lidar_frame(
    topic: str, seq: int, stamp_ns: int, rng: np.random.Generator, n_objects: int = 3, n_points: int = 32
) -> m.LidarFrame:
    """A LiDAR frame with ``n_objects`` cars 5-40 m ahead (sensor frame, metres)."""
    centers = np.column_stack(
        [rng.uniform(5, 40, n_objects), rng.uniform(-10, 10, n_objects), np.full(n_objects, 0.8)]
    ).astype(np.float32)
    return m.LidarFrame(
        header=_header(topic, seq, stamp_ns),
        sensor_id=topic,
        ego_from_sensor=_mount(),
        center_m=centers,
        size_lwh_m=np.tile(np.float32([4.5, 1.9, 1.6]), (n_objects, 1)),
        yaw_rad=rng.uniform(-np.pi, np.pi, n_objects).astype(np.float32),
        class_id=np.full(n_objects, int(m.AgentClass.CAR), np.int32),
        score=np.full(n_objects, 0.9, np.float32),
        points_m=rng.uniform(-20, 20, (n_points, 3)).astype(np.float32),
    )


def radar_frame(
    topic: str,
    seq: int,
    stamp_ns: int,
    rng: np.random.Generator,
    n_returns: int = 4,
    range_rate_mps: float | None = None,
) -> m.RadarFrame:
    """A radar frame; ``range_rate_mps`` sets every return's range rate (m/s), else -5..5."""
    rate = rng.uniform(-5, 5, n_returns) if range_rate_mps is None else np.full(n_returns, range_rate_mps)
    return m.RadarFrame(
        header=_header(topic, seq, stamp_ns),
        sensor_id=topic,
        ego_from_sensor=_mount(),
        range_m=rng.uniform(5, 80, n_returns).astype(np.float32),
        azimuth_rad=rng.uniform(-0.5, 0.5, n_returns).astype(np.float32),
        range_rate_mps=rate.astype(np.float32),
        rcs_dbsm=rng.uniform(0, 20, n_returns).astype(np.float32),
    )


def _image_fields(rng: np.random.Generator, n: int) -> dict[str, Any]:
    u0, v0 = rng.uniform(0, 1500, n), rng.uniform(0, 900, n)
    return {
        "intrinsics": np.array([[1000.0, 0, 960], [0, 1000.0, 540], [0, 0, 1]]),
        "image_wh_px": np.int32([1920, 1080]),
        "boxes_px": np.column_stack([u0, v0, u0 + 100, v0 + 80]).astype(np.float32),
        "class_id": np.full(n, int(m.AgentClass.CAR), np.int32),
        "class_conf": np.full(n, 0.8, np.float32),
    }


def image_frame(topic: str, seq: int, stamp_ns: int, rng: np.random.Generator, n: int = 3) -> Any:
    """A camera or LWIR frame (by topic) with ``n`` boxes, pixels."""
    cls = m.topic_type(topic)
    extra = (
        {"attributes": np.zeros(n, np.uint8)}
        if cls is m.CameraFrame
        else {"heat_k": np.full(n, 5.0, np.float32)}
    )
    return cls(
        header=_header(topic, seq, stamp_ns),
        sensor_id=topic,
        ego_from_sensor=_mount(),
        **_image_fields(rng, n),
        **extra,
    )


def ego_state(
    seq: int, stamp_ns: int, pose: Sequence[float] = (0.0, 0.0, 0.0), topic: str = m.TOPIC_EGO
) -> m.EgoState:
    """An ego state at world ``pose`` ``[x_m, y_m, yaw_rad]`` driving 5 m/s along +x."""
    return m.EgoState(
        header=_header(topic, seq, stamp_ns),
        pose=np.asarray(pose, np.float64),
        velocity_mps=np.float32([5.0, 0.0]),
        accel_mps2=0.0,
        yaw_rate_radps=0.0,
        size_lwh_m=np.float32([4.6, 1.9, 1.5]),
        plan_xy_m=np.float32([[10.0, 0.0], [20.0, 0.0]]),
    )


def traffic_lights(
    seq: int, stamp_ns: int, n: int = 2, topic: str = m.TOPIC_TRAFFIC_LIGHTS
) -> m.TrafficLights:
    """Traffic lights for ``n`` made-up lanes (ids 1..n), all green."""
    return m.TrafficLights(
        header=_header(topic, seq, stamp_ns),
        lane_id=np.arange(1, n + 1, dtype=np.int64),
        state=np.full(n, int(m.LightState.GREEN), np.uint8),
    )


def valid_message(topic: str, seq: int, stamp_ns: int, rng: np.random.Generator) -> Any:
    """A small valid message of the type ``topic`` carries (every subscribed topic)."""
    cls = m.topic_type(topic)
    if cls is m.LidarFrame:
        return lidar_frame(topic, seq, stamp_ns, rng)
    if cls is m.RadarFrame:
        return radar_frame(topic, seq, stamp_ns, rng)
    if cls in (m.CameraFrame, m.LwirFrame):
        return image_frame(topic, seq, stamp_ns, rng)
    if cls is m.EgoState:
        return ego_state(seq, stamp_ns)
    if cls is m.TrafficLights:
        return traffic_lights(seq, stamp_ns)
    raise ValueError(f"no generator for topic {topic!r} (type {cls})")


def valid_frame(topic: str, seq: int, stamp_ns: int, rng: np.random.Generator) -> Frame:
    """:func:`valid_message` encoded."""
    return Frame(topic.encode(), codec.encode(valid_message(topic, seq, stamp_ns, rng)), "valid")


# ----------------------------------------------------------------------------------------------
# Wire-map mutations.
# ----------------------------------------------------------------------------------------------
def wire_from_payload(payload: bytes) -> dict[str, Any]:
    """The msgpack map of an encoded message (arrays stay ``{dtype, shape, data}`` maps)."""
    return msgpack.unpackb(payload, raw=False)


def payload_from_wire(wire: dict[str, Any]) -> bytes:
    return msgpack.packb(wire, use_bin_type=True)


def with_header(payload: bytes, **fields: Any) -> bytes:
    """``payload`` with header fields replaced (``seq``, ``stamp_ns``, ``topic``, ``schema``...)."""
    wire = wire_from_payload(payload)
    wire["header"] = {**wire["header"], **fields}
    return payload_from_wire(wire)


def header_of(payload: bytes) -> dict[str, Any]:
    """The header map of an encoded message."""
    return wire_from_payload(payload)["header"]


def _array_fields(wire: dict[str, Any]) -> list[str]:
    return [k for k, v in wire.items() if isinstance(v, dict) and set(v) == {"dtype", "shape", "data"}]


def _wrong_type_message(topic: str, rng: np.random.Generator) -> Any:
    """A valid message whose type is not the one ``topic`` carries (header topic = ``topic``)."""
    if m.topic_type(topic) is m.EgoState:
        return radar_frame(topic, 0, 0, rng)
    if m.topic_type(topic) is m.TrafficLights:
        return ego_state(0, 0, topic=topic)
    return traffic_lights(0, 0, topic=topic)


def malformed_frame(kind: str, topic: str, rng: np.random.Generator, template: bytes) -> Frame:
    """One malformed payload of ``kind`` (see ``MALFORMED_KINDS``) for ``topic``.

    Args:
        template: a valid encoded message for ``topic`` with non-empty arrays (the mutations
            start from it).

    Every frame returned here must be refused by ``prescient.bus.codec.decode`` with a ``DecodeError``.
    """
    if kind == "random_bytes":
        payload = rng.bytes(int(rng.integers(1, 2048)))
    elif kind == "truncated":
        payload = template[: int(rng.integers(1, len(template)))]
    elif kind == "wrong_type":
        payload = codec.encode(_wrong_type_message(topic, rng))
    elif kind == "msgpack_bomb":
        payload = MSGPACK_BOMB
    elif kind == "deep_nesting":
        payload = b"\x91" * 100_000 + b"\xc0"  # [[[[...nil...]]]] 100,000 levels deep
    else:
        wire = wire_from_payload(template)
        first = _array_fields(wire)[0]
        arr = wire[first]
        if kind == "nan_array":
            floats = [
                k for k in _array_fields(wire) if np.dtype(wire[k]["dtype"]).kind == "f" and wire[k]["data"]
            ]
            # TrafficLights has no float array: give its first array a float64 dtype full of NaN.
            name, dt = (floats[0], np.dtype(wire[floats[0]]["dtype"])) if floats else (first, np.dtype("<f8"))
            shape = wire[name]["shape"]
            data = np.full(int(np.prod(shape)), np.nan, dt).tobytes()
            wire[name] = {"dtype": dt.str, "shape": shape, "data": data}
        elif kind == "shape_overflow":
            wire[first] = {**arr, "shape": list(OVERFLOW_SHAPE)}
        elif kind == "schema_true":
            wire["header"] = {**wire["header"], "schema": True}
        elif kind == "huge_int":
            wire["header"] = {**wire["header"], "seq": UINT64_MAX, "stamp_ns": UINT64_MAX}
        elif kind == "object_dtype":
            wire[first] = {**arr, "dtype": "|O"}
        else:
            raise ValueError(f"unknown malformed kind {kind!r}")
        payload = payload_from_wire(wire)
    return Frame(topic.encode(), payload, kind)


def malformed_stream(
    rng: np.random.Generator, templates: dict[str, bytes], topics: Sequence[str] = SUBSCRIBED_TOPICS
) -> Iterator[Frame]:
    """Endless round robin over every (topic, malformed kind); ``templates``: topic -> valid payload."""
    while True:
        for kind in MALFORMED_KINDS:
            for topic in topics:
                yield malformed_frame(kind, topic, rng, templates[topic])


def huge_topic_frame(template: bytes, prefix: str = "sensor.lidar.") -> Frame:
    """A valid-looking LiDAR payload on a 1.1 MB topic (header topic equal to it)."""
    topic = prefix + "x" * (HUGE_TOPIC_BYTES - len(prefix))
    return Frame(topic.encode(), with_header(template, topic=topic), "huge_topic")


def random_topic_frames(rng: np.random.Generator, templates: dict[str, bytes], count: int) -> Iterator[Frame]:
    """``count`` frames, each on a fresh random topic.

    Topic families (in turn): ``sensor.<hex>``, ``sensor.lidar.<hex>``, ``ego.state<hex>``
    (prefixes the service subscribes to), ``<hex>`` and non-UTF-8 bytes. Payloads alternate
    between random bytes and a valid-looking message retargeted to the topic (header topic
    equal, ``stamp_ns`` 0 and ``seq`` 0: an old frame on a topic no one checks).
    """
    ego, lidar = wire_from_payload(templates[m.TOPIC_EGO]), wire_from_payload(templates["sensor.lidar.fl"])
    for i in range(count):
        tag = rng.bytes(6).hex()
        family = i % 5
        if family == 4:
            topic_b = b"\xff\xfe" + rng.bytes(8)
            yield Frame(topic_b, rng.bytes(64), "random_topic")
            continue
        topic = ("sensor." + tag, "sensor.lidar." + tag, m.TOPIC_EGO + tag, tag)[family]
        if (i // 5) % 2:
            payload = rng.bytes(64)
        else:
            wire = dict(ego if family == 2 else lidar)
            wire["header"] = {**wire["header"], "topic": topic, "seq": 0, "stamp_ns": 0}
            payload = payload_from_wire(wire)
        yield Frame(topic.encode(), payload, "random_topic")


def oversized_frame(topic: str = "sensor.lidar.fl", n_bytes: int = OVERSIZED_BYTES) -> Frame:
    """A LiDAR frame whose point cloud makes the payload larger than ``n_bytes``."""
    n_points = n_bytes // 12 + 1
    msg = m.LidarFrame(
        header=_header(topic, 0, 0),
        sensor_id=topic,
        ego_from_sensor=_mount(),
        center_m=np.zeros((0, 3), np.float32),
        size_lwh_m=np.zeros((0, 3), np.float32),
        yaw_rad=np.zeros(0, np.float32),
        class_id=np.zeros(0, np.int32),
        score=np.zeros(0, np.float32),
        points_m=np.zeros((n_points, 3), np.float32),
    )
    return Frame(topic.encode(), codec.encode(msg, check=False), "oversized")


# ----------------------------------------------------------------------------------------------
# Time and sequence attacks on captured (real) frames.
# ----------------------------------------------------------------------------------------------
def restamped(topic: str, payload: bytes, kind: str, **header: Any) -> Frame:
    """A captured payload with header fields replaced (``seq``, ``stamp_ns``).

    ``sent_mono_ns`` becomes 0 unless given: it marks the frame as ours (the observer keeps only
    frames with a current publish time as templates of the real streams).
    """
    return Frame(topic.encode(), with_header(payload, **{"sent_mono_ns": 0, **header}), kind)


def out_of_order(topic: str, captured: Sequence[bytes], first_seq: int) -> list[Frame]:
    """Captured frames of one topic re-sent newest first, with fresh consecutive ``seq``.

    The sequence numbers look right, so only the capture stamps (going backwards) are wrong.
    """
    by_stamp = sorted(captured, key=lambda p: header_of(p)["stamp_ns"], reverse=True)
    return [restamped(topic, p, "out_of_order", seq=first_seq + i) for i, p in enumerate(by_stamp)]


def seq_injections(topic: str, payload: bytes, stamp_ns: int) -> list[Frame]:
    """The captured frame twice: with ``seq = 2**62`` and with ``seq = 0`` (current stamp)."""
    return [
        restamped(topic, payload, "seq_2^62", seq=2**62, stamp_ns=stamp_ns),
        restamped(topic, payload, "seq_0", seq=0, stamp_ns=stamp_ns),
    ]


# ----------------------------------------------------------------------------------------------
# Request/reply endpoints (frames as a REQ socket would send them, after the empty delimiter).
# ----------------------------------------------------------------------------------------------
CONDITIONAL_KINDS: Final = (
    "plans_1000x80",
    "plans_1000x8",
    "shape_overflow",
    "nan_plans",
    "random_bytes",
    "one_frame",
    "three_frames",
    "topic_not_utf8",
    "wrong_type",
    "wrong_topic",
)
MAP_KINDS: Final = (
    "random_bytes",
    "truncated",
    "wrong_type",
    "unknown_map",
    "long_map_id",
    "schema_true",
    "huge_int",
    "one_frame",
    "topic_not_utf8",
    "msgpack_bomb",
)


def conditional_request(seq: int, n_plans: int = 3, steps: int = m.PRED_HORIZON_STEPS) -> bytes:
    """A valid encoded ConditionalRequest of ``n_plans`` straight plans, ``steps`` long."""
    t = np.arange(1, steps + 1, dtype=np.float32) * 0.5
    plans = (
        np.stack([np.column_stack([t * (b + 1), np.zeros_like(t)]) for b in range(n_plans)])
        if n_plans
        else np.zeros((0, steps, 2), np.float32)
    )
    return codec.encode(
        m.ConditionalRequest(
            header=_header(m.TOPIC_CONDITIONAL_REQUEST, seq, 0),
            request_id=seq,
            plans_xy_m=plans.astype(np.float32),
        )
    )


def map_request(seq: int, map_id: str = "") -> bytes:
    """A valid encoded MapRequest (empty ``map_id``: the current map)."""
    return codec.encode(m.MapRequest(header=_header(m.TOPIC_MAP_REQUEST, seq, 0), map_id=map_id))


def conditional_attack(kind: str, seq: int, rng: np.random.Generator) -> list[bytes]:
    """The frames of one hostile conditional request of ``kind`` (``CONDITIONAL_KINDS``)."""
    topic = m.TOPIC_CONDITIONAL_REQUEST.encode()
    if kind == "plans_1000x80":  # 640 KB: over the request size cap
        return [topic, conditional_request(seq, 1000, m.PRED_HORIZON_STEPS)]
    if kind == "plans_1000x8":  # 64 KB: under the size cap, over the plan count cap
        return [topic, conditional_request(seq, 1000, 8)]
    if kind == "shape_overflow":
        wire = wire_from_payload(conditional_request(seq, 1))
        wire["plans_xy_m"] = {**wire["plans_xy_m"], "shape": [UINT64_MAX, m.PRED_HORIZON_STEPS, 2]}
        return [topic, payload_from_wire(wire)]
    if kind == "nan_plans":
        wire = wire_from_payload(conditional_request(seq, 2))
        n = len(wire["plans_xy_m"]["data"]) // 4
        wire["plans_xy_m"] = {**wire["plans_xy_m"], "data": np.full(n, np.nan, np.float32).tobytes()}
        return [topic, payload_from_wire(wire)]
    if kind == "random_bytes":
        return [topic, rng.bytes(int(rng.integers(1, 4096)))]
    if kind == "one_frame":
        return [rng.bytes(16)]
    if kind == "three_frames":
        return [topic, conditional_request(seq, 1), b"extra"]
    if kind == "topic_not_utf8":
        return [b"\xff\xfe\xfd", conditional_request(seq, 1)]
    if kind == "wrong_type":
        return [topic, with_header(map_request(seq), topic=m.TOPIC_CONDITIONAL_REQUEST)]
    if kind == "wrong_topic":
        return [m.SENSOR_TOPICS[0].encode(), conditional_request(seq, 1)]
    raise ValueError(f"unknown conditional attack {kind!r}")


def map_attack(kind: str, seq: int, rng: np.random.Generator) -> list[bytes]:
    """The frames of one hostile map request of ``kind`` (``MAP_KINDS``)."""
    topic = m.TOPIC_MAP_REQUEST.encode()
    if kind == "random_bytes":
        return [topic, rng.bytes(int(rng.integers(1, 4096)))]
    if kind == "truncated":
        p = map_request(seq, "x" * 40)
        return [topic, p[: int(rng.integers(1, len(p)))]]
    if kind == "wrong_type":
        return [topic, with_header(conditional_request(seq, 1), topic=m.TOPIC_MAP_REQUEST)]
    if kind == "unknown_map":
        return [topic, map_request(seq, "no-such-map-" + rng.bytes(4).hex())]
    if kind == "long_map_id":
        return [topic, map_request(seq, "m" * 60_000)]
    if kind == "schema_true":
        return [topic, with_header(map_request(seq), schema=True)]
    if kind == "huge_int":
        return [topic, with_header(map_request(seq), seq=UINT64_MAX)]
    if kind == "one_frame":
        return [rng.bytes(16)]
    if kind == "topic_not_utf8":
        return [b"\xc3\x28", map_request(seq)]
    if kind == "msgpack_bomb":
        return [topic, MSGPACK_BOMB]
    raise ValueError(f"unknown map attack {kind!r}")
