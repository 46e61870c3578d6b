"""The schema machinery of :mod:`prescient.bus.messages`: field declarations, the header, the registry.

A message is a frozen, slotted dataclass made by :func:`message`; its array fields carry an
:class:`ArraySpec` (dtype and symbolic shape) and its scalar fields their Python type, both read
by :mod:`prescient.bus.codec`. Fields added after schema version 1 say so (``since``) and carry a default,
so older payloads still decode. Import message types and these names from :mod:`prescient.bus.messages`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeVar, dataclass_transform

import numpy as np

# 2: Health.state, Health.live; 3: PlannerStatus.data_age_ns; 4: Health.precision;
# 5: Predictions.agent_source
SCHEMA_VERSION: Final = 5
MIN_SCHEMA_VERSION: Final = 1


@dataclass(frozen=True)
class ArraySpec:
    """Declared dtype and shape of an array field. Shape entries: int (fixed) or str (symbol).

    ``since``: the schema version that added the field; a payload of an older version leaves it
    out and decodes with an array of ``fill`` (its symbols sized by the message's other fields).
    """

    dtype: np.dtype
    shape: tuple[int | str, ...]
    since: int = 1
    fill: int | float = 0


def array_field(dtype: Any, *shape: int | str, since: int = 1, fill: int | float = 0) -> Any:
    """A dataclass field holding a numpy array of ``dtype`` and symbolic ``shape`` (see :class:`ArraySpec`)."""
    return field(metadata={"array": ArraySpec(np.dtype(dtype), tuple(shape), since, fill)})


def scalar_field(kind: type, default: Any = dataclasses.MISSING, since: int = 1) -> Any:
    """A scalar field (int, float, str, bool) or a ``dict`` of str -> int.

    ``since``: the schema version that added the field (it then needs a default; a ``dict``
    field's default is an empty map).
    """
    meta = {"scalar": kind, "since": since}
    if since > 1 and default is dataclasses.MISSING:
        raise TypeError("a field added after schema version 1 needs a default")
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    if kind is dict:
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


def added_fields(cls: type, version: int) -> dict[str, Any]:
    """Fields of ``cls`` newer than schema ``version``, with the default each takes when absent."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("since", 1) > version:
            out[f.name] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return out


@dataclass(frozen=True, slots=True)
class Header:
    """Common header of every message.

    Attributes:
        topic: bus topic the message is published on.
        seq: per-topic sequence number set by the publisher (0, 1, 2, ...).
        stamp_ns: capture / measurement time, simulation or log clock, ns.
        sent_mono_ns: ``time.monotonic_ns()`` at publish on the sending host; 0 before publish.
        schema: schema version the sender was built with.
    """

    topic: str
    seq: int = 0
    stamp_ns: int = 0
    sent_mono_ns: int = 0
    schema: int = SCHEMA_VERSION


class Message:
    """Marker base class; every concrete message is a frozen dataclass with a ``header``."""

    TYPE_NAME: ClassVar[str]
    header: Header


MESSAGE_TYPES: dict[str, type] = {}
_M = TypeVar("_M")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def message(cls: type[_M]) -> type[_M]:
    """Class decorator: make a frozen, slotted dataclass and register it by name.

    ``dataclass_transform`` tells a type checker that the decorated class gets a dataclass
    constructor (its fields, in order, with their defaults).
    """
    dc = dataclass(frozen=True, slots=True, eq=False)(cls)  # eq=False: == on arrays is ambiguous
    dc.TYPE_NAME = cls.__name__  # type: ignore[attr-defined]  # declared on Message
    MESSAGE_TYPES[cls.__name__] = dc
    return dc


def array_specs(cls: type) -> dict[str, ArraySpec]:
    """Array fields of a message class and their declared specs."""
    return {f.name: f.metadata["array"] for f in dataclasses.fields(cls) if "array" in f.metadata}


def scalar_specs(cls: type) -> dict[str, type]:
    """Scalar fields of a message class and their declared Python types."""
    return {f.name: f.metadata["scalar"] for f in dataclasses.fields(cls) if "scalar" in f.metadata}


def empty(cls: type, topic: str, stamp_ns: int = 0, **overrides: Any) -> Any:
    """A message of ``cls`` with every symbolic dimension 0 (useful as a template)."""
    kwargs: dict[str, Any] = {}
    for name, spec in array_specs(cls).items():
        kwargs[name] = np.zeros(tuple(0 if isinstance(d, str) else d for d in spec.shape), spec.dtype)
    defaults = {int: 0, float: 0.0, str: "", bool: False, dict: {}}
    for name, kind in scalar_specs(cls).items():
        kwargs[name] = defaults[kind] if kind is not dict else {}
    for name in array_specs(cls):
        if name.endswith("_offsets"):
            kwargs[name] = np.zeros(1, np.int64)
    kwargs.update(overrides)
    return cls(header=Header(topic=topic, stamp_ns=stamp_ns), **kwargs)
