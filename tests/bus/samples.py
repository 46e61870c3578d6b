"""One valid, non-trivial instance of every message type (shared by the bus tests)."""

from __future__ import annotations

import numpy as np

from prescient.bus import messages as m


def _a(rng: np.random.Generator, dtype, *shape) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.normal(size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(size=shape) > 0.5
    return rng.integers(0, 7, size=shape).astype(dtype)


def sample_message(cls: type, seed: int = 0, n: int = 5) -> object:
    """A random but valid message of ``cls``: every symbolic dim is ``n`` (CSR fields made valid)."""
    rng = np.random.default_rng(seed)
    topic = {
        m.CameraFrame: m.sensor_topic(m.Modality.CAMERA, m.Corner.FRONT_LEFT),
        m.LwirFrame: m.sensor_topic(m.Modality.LWIR, m.Corner.REAR_RIGHT),
        m.LidarFrame: m.sensor_topic(m.Modality.LIDAR, m.Corner.FRONT_RIGHT),
        m.RadarFrame: m.sensor_topic(m.Modality.RADAR, m.Corner.REAR_LEFT),
        m.Health: m.health_topic("test"),
    }.get(cls)
    if topic is None:
        topic = next(t for t in _ALL_TOPICS if m.topic_type(t) is cls)
    kwargs: dict[str, object] = {}
    for name, spec in m.array_specs(cls).items():
        shape = tuple(n if isinstance(d, str) else d for d in spec.shape)
        kwargs[name] = _a(rng, spec.dtype, *shape)
    for _points, offsets, _owner in m.CSR_FIELDS.get(cls.__name__, ()):
        # n owners (lanes or polygons) holding one of the n points each: offsets 0, 1, ..., n.
        kwargs[offsets] = np.arange(n + 1, dtype=np.int64)
    scalar_values = {int: 7, float: 0.25, str: "x", bool: True, dict: {"a": 1}}
    for name, kind in m.scalar_specs(cls).items():
        kwargs[name] = scalar_values[kind]
    return cls(header=m.Header(topic=topic, seq=3, stamp_ns=123_000_000, sent_mono_ns=99), **kwargs)


_ALL_TOPICS = (
    m.TOPIC_EGO,
    m.TOPIC_GROUND_TRUTH,
    m.TOPIC_TRAFFIC_LIGHTS,
    m.TOPIC_MAP,
    m.TOPIC_MAP_REQUEST,
    m.TOPIC_TRACKS,
    m.TOPIC_PREDICTIONS,
    m.TOPIC_PLANNER_STATUS,
    m.TOPIC_CONDITIONAL_REQUEST,
    m.TOPIC_CONDITIONAL_REPLY,
)


def assert_msg_equal(a: object, b: object) -> None:
    """Field-by-field equality for messages (arrays compared exactly, dtype included)."""
    if type(a) is not type(b):
        raise AssertionError(f"{type(a).__name__} != {type(b).__name__}")
    if a.header != b.header:
        raise AssertionError(f"headers differ: {a.header} != {b.header}")
    for name in m.array_specs(type(a)):
        x, y = getattr(a, name), getattr(b, name)
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            raise AssertionError(f"{name} differs")
    for name in m.scalar_specs(type(a)):
        if getattr(a, name) != getattr(b, name):
            raise AssertionError(f"{name}: {getattr(a, name)!r} != {getattr(b, name)!r}")
