"""msgpack codec for :mod:`prescient.bus.messages`, strict on decode.

Wire format: one msgpack map ``{"type": str, "header": {...}, <field>: value, ...}``. Arrays
travel as ``{"dtype": str, "shape": [int, ...], "data": bytes}`` (C order, little endian) and are
rebuilt with ``np.frombuffer`` without copying, so decoded arrays are read-only. Nothing is ever
unpickled.

Decode rejects, with a :class:`~prescient.bus.errors.DecodeError` naming topic, field and reason: payloads
that are not msgpack or over ``max_bytes``, unknown types, a type not allowed on the topic, a
header topic that differs from the transport topic, a wrong schema version, missing or extra keys,
wrong scalar types, wrong dtype or shape, inconsistent lengths, NaN/inf, and broken CSR offsets.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any, Final

import msgpack
import numpy as np

from prescient.bus import messages as m
from prescient.bus.errors import DecodeError, EncodeError

DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
MAX_STR_BYTES: Final = 64 * 1024  # topic names, reasons, status lines, counter keys
MAX_NDIM: Final = 8
# Counter maps (health, timings): the sender bounds its keys; these limits make a message that
# breaks that promise fail on encode at the sender rather than at every receiver.
MAX_DICT_ENTRIES: Final = 4096
MAX_KEY_CHARS: Final = 256
INT64_MAX: Final = 2**63 - 1  # every int on the wire must fit the int64 it becomes downstream
_HEADER_KEYS: Final = ("topic", "seq", "stamp_ns", "sent_mono_ns", "schema")
_SCALAR_CHECK: Final = {
    int: lambda v: isinstance(v, int) and not isinstance(v, bool) and -INT64_MAX - 1 <= v <= INT64_MAX,
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    bool: lambda v: isinstance(v, bool),
    dict: lambda v: isinstance(v, dict),
}


# One msgpack packer per thread, kept between messages. ``msgpack.packb`` builds a fresh packer
# whose buffer grows by reallocation on every call: a 160-agent prediction (1.2 MB) took 1.2 ms
# to encode, 0.2-0.3 ms with a kept packer (2-core VM, fresh arrays each time). The kept buffer
# stays as large as the largest message its thread packed (a conditional reply: ~10 MB).
_packers = threading.local()  # a packer is not safe to share between threads


def _packer() -> msgpack.Packer:
    p = getattr(_packers, "packer", None)
    if p is None:
        p = _packers.packer = msgpack.Packer(use_bin_type=True)
    return p


def _wire_array(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))  # only reachable with check=False
    # A byte view, not ``tobytes()``: the packer copies it once into its own buffer.
    data = a.reshape(-1).view(np.uint8).data if a.size else b""
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": data}


def check_message(msg: Any) -> None:
    """Check dtypes, shapes, symbol consistency and finiteness of ``msg``; raise on violation.

    Raises:
        EncodeError: with the field and reason.
    """
    cls = type(msg)
    dims: dict[str, int] = {}
    for name, spec in m.array_specs(cls).items():
        a = getattr(msg, name)
        if not isinstance(a, np.ndarray):
            raise EncodeError(f"{cls.__name__}.{name}: expected numpy array, got {type(a).__name__}")
        bad = _check_array(a, spec, dims)
        if bad:
            raise EncodeError(f"{cls.__name__}.{name}: {bad[1]}")
    for name, kind in m.scalar_specs(cls).items():
        bad = _check_scalar(getattr(msg, name), kind)
        if bad:
            raise EncodeError(f"{cls.__name__}.{name}: {bad[1]}")
    reason_field = _check_csr(msg)
    if reason_field:
        raise EncodeError(f"{cls.__name__}.{reason_field[1]}: {reason_field[0]}")


def encode(msg: Any, *, check: bool = True) -> bytes:
    """Serialise a message to msgpack bytes.

    Args:
        msg: an instance of a registered message type.
        check: validate dtypes/shapes/finiteness first (cheap; leave on except in benchmarks).

    Raises:
        EncodeError: if the message would be rejected by :func:`decode`.
    """
    cls = type(msg)
    if cls.__name__ not in m.MESSAGE_TYPES:
        raise EncodeError(f"not a registered message type: {cls.__name__}")
    if check:
        check_message(msg)
    h = msg.header
    wire: dict[str, Any] = {
        "type": cls.__name__,
        "header": {
            "topic": h.topic,
            "seq": h.seq,
            "stamp_ns": h.stamp_ns,
            "sent_mono_ns": h.sent_mono_ns,
            "schema": h.schema,
        },
    }
    for f in dataclasses.fields(cls):
        if f.name == "header":
            continue
        v = getattr(msg, f.name)
        wire[f.name] = _wire_array(v) if "array" in f.metadata else v
    out: bytes = _packer().pack(wire)  # on an exception the packer resets itself
    return out


def decode(topic: str, payload: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse and validate one payload received on ``topic``.

    Returns:
        The message instance; its arrays are read-only views into ``payload``.

    Raises:
        DecodeError: naming topic, field and reason. Nothing else escapes: an error of any
            other type is a bug in a check, and is still reported as a ``DecodeError``
            (field ``internal``) so a hostile payload can never stop a process.
    """
    try:
        return _decode(topic, payload, max_bytes)
    except DecodeError:
        raise
    except Exception as e:  # defence in depth: see the docstring
        raise DecodeError(
            topic, f"unexpected {type(e).__name__}: {e}", len(payload), "internal", "internal"
        ) from e


def _decode(topic: str, payload: bytes, max_bytes: int) -> Any:
    n = len(payload)
    if n > max_bytes:
        raise DecodeError(topic, f"payload {n} bytes exceeds limit {max_bytes}", n, code="too_large")
    try:
        raw = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            max_bin_len=max_bytes,
            max_str_len=MAX_STR_BYTES,
            max_array_len=1 << 16,
            max_map_len=1 << 16,
        )
    except Exception as e:  # msgpack may raise errors outside UnpackException
        raise DecodeError(topic, f"not msgpack: {type(e).__name__}: {e}", n, code="not_msgpack") from e
    if not isinstance(raw, dict):
        raise DecodeError(topic, f"top level is {type(raw).__name__}, expected map", n, code="not_a_map")
    type_name = raw.get("type")
    cls = m.MESSAGE_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise DecodeError(topic, f"unknown message type {type_name!r}", n, "type", "unknown_type")
    expected = m.topic_type(topic)
    if expected is not None and expected is not cls:
        raise DecodeError(
            topic,
            f"type {type_name} not allowed on this topic (expects {expected.__name__})",
            n,
            "type",
            "wrong_type_for_topic",
        )
    header = _decode_header(topic, raw.get("header"), n)

    names = [f.name for f in dataclasses.fields(cls) if f.name != "header"]
    keys = set(raw) - {"type", "header"}
    newer = m.added_fields(cls, header.schema)  # an older sender may leave these out
    array_specs = m.array_specs(cls)
    newer_arrays = {k for k, spec in array_specs.items() if spec.since > header.schema and k not in keys}
    missing = [k for k in names if k not in keys and k not in newer and k not in newer_arrays]
    extra = sorted(keys - set(names))
    if missing:
        raise DecodeError(topic, f"missing keys {missing}", n, missing[0], "missing_keys")
    if extra:
        raise DecodeError(topic, f"unexpected keys {extra}"[:200], n, str(extra[0])[:64], "unexpected_keys")

    kwargs: dict[str, Any] = {"header": header, **{k: v for k, v in newer.items() if k not in keys}}
    dims: dict[str, int] = {}
    scalars = m.scalar_specs(cls)
    kwargs.update(_decode_arrays(topic, raw, array_specs, newer_arrays, n, dims))
    for name, kind in scalars.items():
        if name not in raw:
            continue  # a newer field an older sender left out: its default is in kwargs
        bad = _check_scalar(raw[name], kind)
        if bad:
            raise DecodeError(topic, bad[1], n, name, bad[0])
        kwargs[name] = float(raw[name]) if kind is float else raw[name]
    msg = cls(**kwargs)
    bad = _check_csr(msg)
    if bad:
        raise DecodeError(topic, bad[0], n, bad[1], "csr")
    return msg


def _decode_arrays(
    topic: str,
    raw: dict[str, Any],
    specs: dict[str, m.ArraySpec],
    newer: set[str],
    n: int,
    dims: dict[str, int],
) -> dict[str, np.ndarray]:
    """The array fields of ``raw``, checked; those in ``newer`` (added after the sender's schema
    and left out) are filled with their spec's ``fill``, sized by the fields that were sent."""
    out: dict[str, np.ndarray] = {}
    for name, spec in specs.items():
        if name in newer:
            continue
        a = _decode_array(topic, name, raw[name], n)
        bad = _check_array(a, spec, dims)
        if bad:
            raise DecodeError(topic, bad[1], n, name, bad[0])
        out[name] = a
    for name in sorted(newer):
        spec = specs[name]
        unknown = [d for d in spec.shape if isinstance(d, str) and d not in dims]
        if unknown:
            raise DecodeError(topic, f"cannot size {name}: no field gives {unknown}", n, name, "missing_keys")
        shape = tuple(dims[d] if isinstance(d, str) else d for d in spec.shape)
        out[name] = np.full(shape, spec.fill, spec.dtype)
    return out


def _decode_header(topic: str, h: Any, n: int) -> m.Header:
    if not isinstance(h, dict):
        raise DecodeError(topic, "header missing or not a map", n, "header", "header")
    if set(h) != set(_HEADER_KEYS):
        raise DecodeError(topic, f"header keys {sorted(h)} != {sorted(_HEADER_KEYS)}", n, "header", "header")
    # type() check: True == 1 and 1.0 == 1 in Python, but neither is schema version 1.
    if type(h["schema"]) is not int or not m.MIN_SCHEMA_VERSION <= h["schema"] <= m.SCHEMA_VERSION:
        raise DecodeError(
            topic,
            f"schema version {h['schema']!r}, expected {m.MIN_SCHEMA_VERSION}..{m.SCHEMA_VERSION}",
            n,
            "header.schema",
            "schema_version",
        )
    if h["topic"] != topic:
        raise DecodeError(
            topic,
            f"header topic {h['topic']!r:.80} differs from transport topic",
            n,
            "header.topic",
            "topic_mismatch",
        )
    for k in ("seq", "stamp_ns", "sent_mono_ns"):
        v = h[k]
        if not _SCALAR_CHECK[int](v) or v < 0:
            raise DecodeError(
                topic, f"{k} must be a non-negative int64, got {v!r}", n, f"header.{k}", "header"
            )
    return m.Header(
        topic=h["topic"],
        seq=h["seq"],
        stamp_ns=h["stamp_ns"],
        sent_mono_ns=h["sent_mono_ns"],
        schema=h["schema"],
    )


def _decode_array(topic: str, name: str, v: Any, n: int) -> np.ndarray:
    if not isinstance(v, dict) or set(v) != {"dtype", "shape", "data"}:
        raise DecodeError(topic, "array must be a map with keys dtype, shape, data", n, name, "bad_array")
    dtype_s, shape, data = v["dtype"], v["shape"], v["data"]
    if not isinstance(dtype_s, str) or not isinstance(data, bytes) or not isinstance(shape, list):
        raise DecodeError(topic, "array dtype/shape/data have wrong types", n, name, "bad_array")
    if len(shape) > MAX_NDIM or not all(_SCALAR_CHECK[int](d) and d >= 0 for d in shape):
        raise DecodeError(topic, f"bad shape {shape!r}", n, name, "shape")
    try:
        dtype = np.dtype(dtype_s)
    except TypeError as e:
        raise DecodeError(topic, f"bad dtype {dtype_s!r}", n, name, "dtype") from e
    if dtype.hasobject or dtype.kind not in "biuf":
        raise DecodeError(topic, f"dtype {dtype_s!r} not allowed", n, name, "dtype")
    # Exact integer arithmetic: np.prod in int64 wraps, so [2**64-1, 2] would pass as -2.
    if math.prod(shape) * dtype.itemsize != len(data):
        raise DecodeError(
            topic, f"{len(data)} data bytes do not match shape {shape} of {dtype_s}", n, name, "shape"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _check_array(a: np.ndarray, spec: m.ArraySpec, dims: dict[str, int]) -> tuple[str, str] | None:
    """None if ``a`` matches ``spec`` (recording symbols in ``dims``), else ``(code, reason)``."""
    if a.dtype != spec.dtype:
        return "dtype", f"dtype {a.dtype.str}, expected {spec.dtype.str}"
    if a.ndim != len(spec.shape):
        return "shape", f"shape {list(a.shape)}, expected {list(spec.shape)}"
    for size, want in zip(a.shape, spec.shape):
        if isinstance(want, int):
            if size != want:
                return "shape", f"shape {list(a.shape)}, expected {list(spec.shape)}"
        elif dims.setdefault(want, size) != size:
            return "shape", f"inconsistent length: {want}={size} here but {dims[want]} in an earlier field"
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        return "non_finite", "contains NaN or inf"
    return None


def _check_scalar(v: Any, kind: type) -> tuple[str, str] | None:
    """None if ``v`` is a valid ``kind`` scalar, else ``(code, reason)``."""
    if not _SCALAR_CHECK[kind](v):
        return "scalar_type", f"expected {kind.__name__}, got {type(v).__name__}"
    if kind is float and not np.isfinite(v):
        return "non_finite", "NaN or inf"
    if kind is str and len(v) > MAX_STR_BYTES:
        return "too_long", f"string of {len(v)} characters exceeds {MAX_STR_BYTES}"
    if kind is dict:
        if len(v) > MAX_DICT_ENTRIES:
            return "too_long", f"map of {len(v)} entries exceeds {MAX_DICT_ENTRIES}"
        if not all(
            isinstance(k, str) and len(k) <= MAX_KEY_CHARS and _SCALAR_CHECK[int](x) for k, x in v.items()
        ):
            return (
                "scalar_type",
                f"expected a map of str -> int64 (keys of at most {MAX_KEY_CHARS} characters)",
            )
    return None


def _check_csr(msg: Any) -> tuple[str, str] | None:
    for points, offsets, owner in m.CSR_FIELDS.get(type(msg).__name__, ()):
        o, n_points = getattr(msg, offsets), len(getattr(msg, points))
        if len(o) == 0 or o[0] != 0 or o[-1] != n_points or (np.diff(o) < 0).any():
            return (f"offsets must start at 0, not decrease, and end at {n_points}", offsets)
        if owner is not None and len(o) != len(getattr(msg, owner)) + 1:
            return (f"{len(o)} offsets for {len(getattr(msg, owner))} {owner} entries (need +1)", offsets)
    return None
