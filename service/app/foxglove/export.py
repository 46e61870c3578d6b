"""A prescient log -> an MCAP file of ``foxglove.*`` messages (``prescient export-scene``), and
with every logged message beside them as JSON (``prescient log export-foxglove``).

Scene topics are those of :mod:`.stream`; the logged messages keep their topic under
:data:`RAW_PREFIX` (``/prescient/predictions``: plot any field, e.g. ``timings_ns.infer``). ``log_time`` is wall clock (ns since the UNIX epoch), anchored
like ``prescient log export-ros2`` (:func:`prescient.bus.ros2.export.time_anchor`): the recorder's
``prescient.clock`` metadata when the log was recorded live, else the first stamp placed at
2024-01-01T00:00:00Z (:data:`~prescient.bus.ros2.export.FIXED_EPOCH_NS`). The file is written next
to ``out`` under a temporary name and renamed when complete: an interrupted export leaves no
partial file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer

from prescient.bus.logfile import LogError, json_from_message, json_schema, refuse_existing
from prescient.bus.logreader import LogReader, ReadStats
from prescient.bus.replayer import iter_messages
from prescient.bus.ros2.export import TimeAnchor, time_anchor
from prescient.service.app.foxglove.stream import JSON_SCHEMAS, SOURCE_TOPICS, FoxgloveMessage, SceneStream

LIBRARY = "prescient.export-scene"
RAW_PREFIX = "/prescient/"  # the logged messages, as JSON, in an export-foxglove file


class _SceneWriter:
    """Registers one schema and channel per Foxglove topic on first use, then adds messages."""

    def __init__(self, f: BinaryIO) -> None:
        self.w = Writer(f, compression=CompressionType.ZSTD)
        self.w.start(profile="", library=LIBRARY)
        self.channels: dict[str, int] = {}

    def _register(self, fx: FoxgloveMessage) -> int:
        if isinstance(fx.payload, dict):
            sid = self.w.register_schema(
                str(JSON_SCHEMAS[fx.topic]["title"]),
                SchemaEncoding.JSONSchema,
                json.dumps(JSON_SCHEMAS[fx.topic]).encode(),
            )
            return self.w.register_channel(fx.topic, MessageEncoding.JSON, sid)
        schema = type(fx.payload).get_schema()
        sid = self.w.register_schema(schema.name, schema.encoding, schema.data)
        return self.w.register_channel(fx.topic, MessageEncoding.Protobuf, sid)

    def add(self, fx: FoxgloveMessage) -> None:
        if fx.topic not in self.channels:
            self.channels[fx.topic] = self._register(fx)
        data = (
            json.dumps(fx.payload, separators=(",", ":")).encode()
            if isinstance(fx.payload, dict)
            else fx.payload.encode()
        )
        self.w.add_message(
            self.channels[fx.topic], log_time=fx.log_time_ns, data=data, publish_time=fx.log_time_ns
        )

    def add_raw(self, topic: str, msg: object, log_time_ns: int) -> None:
        """A logged message as JSON (its schema generated from the message class) on RAW_PREFIX + topic."""
        name = RAW_PREFIX + topic
        if name not in self.channels:
            cls = type(msg)
            sid = self.w.register_schema(
                f"prescient.{cls.__name__}", SchemaEncoding.JSONSchema, json.dumps(json_schema(cls)).encode()
            )
            self.channels[name] = self.w.register_channel(name, MessageEncoding.JSON, sid)
        data = json.dumps(json_from_message(msg), separators=(",", ":")).encode()
        self.w.add_message(self.channels[name], log_time=log_time_ns, data=data, publish_time=log_time_ns)

    def finish(self, anchor: TimeAnchor) -> None:
        self.w.add_metadata(
            "prescient.foxglove",
            {"time_source": anchor.source, "stamp_offset_ns": str(anchor.stamp_offset_ns)},
        )
        self.w.finish()


def export_scene(
    src: str | Path,
    out: str | Path,
    stats: ReadStats | None = None,
    *,
    overwrite: bool = False,
    on_message: Callable[[], object] | None = None,
    raw_messages: bool = False,
) -> dict[str, int]:
    """Write the Foxglove scene of ``src`` to ``out`` (MCAP, zstd); return messages per Foxglove topic.

    Damage in ``src`` is counted in ``stats`` (every readable message is converted).
    ``raw_messages``: also every logged message as JSON on ``RAW_PREFIX + topic``, at the same
    wall-clock ``log_time`` (``prescient log export-foxglove``).

    Raises:
        LogError: ``src`` unreadable or without ego/tracks/predictions; ``out`` is ``src``; ``out``
            holds data and ``overwrite`` is False. ``out`` is then untouched.
    """
    src, out = Path(src), Path(out)
    stats = stats if stats is not None else ReadStats()
    if out.resolve() == src.resolve():
        raise LogError(out, "is the log being exported; choose another output")
    LogReader(src)  # fail on an unreadable log before creating anything
    refuse_existing(out, overwrite=overwrite)
    anchor = time_anchor(src, any_topic=raw_messages)
    stream = SceneStream(anchor.stamp_offset_ns, anchor.log_offset_ns)
    counts: dict[str, int] = {}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            sw = _SceneWriter(f)
            for lm in iter_messages(src, topics=None if raw_messages else SOURCE_TOPICS, stats=stats):
                for fx in stream.convert(lm.topic, lm.msg, lm.log_time_ns):
                    sw.add(fx)
                    counts[fx.topic] = counts.get(fx.topic, 0) + 1
                if raw_messages:
                    sw.add_raw(lm.topic, lm.msg, lm.log_time_ns + anchor.log_offset_ns)
                    counts[RAW_PREFIX + lm.topic] = counts.get(RAW_PREFIX + lm.topic, 0) + 1
                if on_message is not None:
                    on_message()
            sw.finish(anchor)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return counts


def summary_line(counts: dict[str, int], out: Path) -> str:
    """``wrote N foxglove messages on T topics to OUT (topic: n, ...)``."""
    per = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items()))
    return f"wrote {sum(counts.values())} foxglove messages on {len(counts)} topics to {out} ({per})"
