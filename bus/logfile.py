"""MCAP log files: a writer for raw msgpack payloads and a tolerant sequential reader.

Layout of a prescient log:
  * One MCAP channel per bus topic, ``message_encoding="msgpack"`` (MCAP well-known
    ``MessageEncoding.MessagePack``). The channel's schema is named ``prescient.<TypeName>``
    (encoding ``jsonschema``; it describes the msgpack wire form of :mod:`bus.codec`) and carries
    the schema version in the channel metadata. Topics with no fixed type get schema id 0.
  * Message ``data`` is the raw msgpack payload exactly as it crossed the bus (bit-exact replay).
  * ``log_time``: for live recordings, ``time.monotonic_ns()`` of the recording host at receive;
    for offline producers (simulator logs, importers) the message's ``header.stamp_ns``.
    ``publish_time``: ``header.sent_mono_ns`` when the sender set it, else ``header.stamp_ns``.
    ``sequence``: ``header.seq`` modulo 2**32.
  * Chunked, zstd-compressed (lz4 or none selectable). Each chunk is self-contained, so after a
    crash (``kill -9``) every chunk already written can still be read by :class:`LogReader`.
  * Metadata records named ``prescient.*`` (string map) hold recorder statistics (seq gaps).

:class:`LogReader` does not rely on the summary section at the end of the file: it walks the
records from the start, checks each chunk's CRC, and on damage (truncated tail, corrupted chunk,
broken framing) records a clear problem in ``stats.problems``, resynchronises on the next
readable chunk where it can, and keeps yielding every readable message.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import mmap
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgpack
import numpy as np
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Message, Metadata, Schema
from mcap.stream_reader import breakup_chunk
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer

from bus import codec
from bus import messages as m
from bus.errors import BusError

log = logging.getLogger(__name__)

MCAP_MAGIC: Final = b"\x89MCAP0\r\n"
PROFILE: Final = "prescient"
SCHEMA_PREFIX: Final = "prescient."
DEFAULT_CHUNK_BYTES: Final = 1024 * 1024
_RECORD_HEADER: Final = struct.Struct("<BQ")
_KNOWN_OPCODES: Final = frozenset(int(o) for o in Opcode)
_COMPRESSION: Final = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}


class LogError(BusError):
    """A log file that cannot be read at all (missing, empty, not MCAP), or, in strict mode,
    one with damage. ``problems`` lists every problem found, each naming offset and reason."""

    def __init__(self, path: str | Path, reason: str, problems: list[str] | None = None) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.problems = str(path), reason, list(problems or [])


class LogRecord(NamedTuple):
    """One recorded bus message: topic, times (ns) and the raw msgpack payload."""

    topic: str
    log_time_ns: int
    publish_time_ns: int
    payload: bytes


@dataclasses.dataclass
class ReadStats:
    """What a read saw: messages yielded, skipped (by reason) and damage found.

    Attributes:
        yielded: records handed to the caller.
        skipped: counts keyed by reason (``unknown_topic:<topic>``, ``decode:<topic>``, ...).
        problems: human-readable damage reports, each naming the byte offset.
        metadata: ``prescient.*`` metadata records found (name -> string map).
        complete: True when the footer and closing magic were read (the file was finished).
    """

    yielded: int = 0
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    metadata: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    complete: bool = False

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())


# ----------------------------------------------------------------------------------------------
# JSON schemas generated from the dataclass specs in bus/messages.py.
# ----------------------------------------------------------------------------------------------
_JSON_SCALAR: Final = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object"}


def _json_array_schema(spec: m.ArraySpec) -> dict[str, Any]:
    kind = spec.dtype.kind
    leaf: dict[str, Any] = {"type": "boolean" if kind == "b" else "integer" if kind in "iu" else "number"}
    for d in reversed(spec.shape):
        node: dict[str, Any] = {"type": "array", "items": leaf}
        if isinstance(d, int):
            node["minItems"] = node["maxItems"] = d
        leaf = node
    leaf["description"] = f"dtype {spec.dtype.name}, shape {list(spec.shape)}"
    return leaf


def json_schema(cls: type) -> dict[str, Any]:
    """JSON Schema of the JSON export of message type ``cls`` (arrays as nested lists)."""
    props: dict[str, Any] = {
        "header": {
            "type": "object",
            "properties": {
                "topic": {"type": "string"},
                "seq": {"type": "integer"},
                "stamp_ns": {"type": "integer"},
                "sent_mono_ns": {"type": "integer"},
                "schema": {"type": "integer"},
            },
        }
    }
    for name, kind in m.scalar_specs(cls).items():
        props[name] = {"type": _JSON_SCALAR[kind]}
    for name, spec in m.array_specs(cls).items():
        props[name] = _json_array_schema(spec)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{SCHEMA_PREFIX}{cls.__name__}",
        "type": "object",
        "properties": props,
        "required": list(props),
    }


def wire_json_schema(cls: type) -> dict[str, Any]:
    """JSON Schema of the msgpack wire form (arrays as ``{dtype, shape, data}`` maps)."""
    schema = json_schema(cls)
    wire_array = {
        "type": "object",
        "properties": {
            "dtype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "data": {"type": "string", "contentEncoding": "binary"},
        },
    }
    for name in m.array_specs(cls):
        schema["properties"][name] = dict(wire_array, description=schema["properties"][name]["description"])
    schema["properties"]["type"] = {"const": cls.__name__}
    schema["required"] = ["type", *schema["required"]]
    return schema


def json_from_message(msg: Any) -> dict[str, Any]:
    """Plain JSON-able dict of a message: header as a map, arrays as nested lists."""
    out: dict[str, Any] = {"header": dataclasses.asdict(msg.header)}
    for f in dataclasses.fields(msg):
        if f.name == "header":
            continue
        v = getattr(msg, f.name)
        out[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
    return out


# ----------------------------------------------------------------------------------------------
# Writer.
# ----------------------------------------------------------------------------------------------
class _UnbufferedFile:
    """File wrapper with no user-space buffer: every chunk the MCAP writer emits reaches the OS
    immediately, so a killed process loses only the chunk still being built in memory."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            n = self._f.write(view)
            view = view[n:]
        return len(data)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        pass  # unbuffered

    def fsync(self) -> None:
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


class LogWriter:
    """Writes a prescient MCAP log. Use as a context manager; ``close()`` finishes the file.

    Args:
        path: output file (created or truncated).
        compression: ``"zstd"`` (default), ``"lz4"`` or ``"none"``.
        chunk_bytes: uncompressed chunk size at which a chunk is written out.
        stamp_seq: in :meth:`write`, replace ``header.seq`` by a per-topic counter (0, 1, ...).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        compression: str = "zstd",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        stamp_seq: bool = True,
    ) -> None:
        if compression not in _COMPRESSION:
            raise ValueError(f"compression must be one of {sorted(_COMPRESSION)}, got {compression!r}")
        self.path = Path(path)
        self._file = _UnbufferedFile(self.path)
        self._writer = Writer(self._file, chunk_size=chunk_bytes, compression=_COMPRESSION[compression])
        self._writer.start(profile=PROFILE, library="prescient.bus.logfile")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self._stamp_seq = stamp_seq
        self.counts: dict[str, int] = {}
        self.bytes_written = 0
        self._closed = False

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _channel(self, topic: str, type_name: str | None) -> int:
        cid = self._channels.get(topic)
        if cid is not None:
            return cid
        cls = m.MESSAGE_TYPES.get(type_name or "") or m.topic_type(topic)
        schema_id = 0
        meta = {"schema_version": str(m.SCHEMA_VERSION)}
        if cls is not None:
            schema_id = self._schemas.get(cls.__name__, 0)
            if not schema_id:
                data = json.dumps(wire_json_schema(cls)).encode()
                schema_id = self._writer.register_schema(
                    f"{SCHEMA_PREFIX}{cls.__name__}", SchemaEncoding.JSONSchema, data
                )
                self._schemas[cls.__name__] = schema_id
            meta["type"] = cls.__name__
        cid = self._writer.register_channel(topic, MessageEncoding.MessagePack, schema_id, meta)
        self._channels[topic] = cid
        return cid

    def write_raw(
        self,
        topic: str,
        payload: bytes,
        log_time_ns: int,
        publish_time_ns: int,
        *,
        seq: int = 0,
        type_name: str | None = None,
    ) -> None:
        """Append one raw payload exactly as given (no decoding, no validation).

        Args:
            topic: bus topic.
            payload: msgpack bytes as they crossed the bus.
            log_time_ns: receive time (monotonic ns) live, or ``header.stamp_ns`` offline.
            publish_time_ns: ``header.sent_mono_ns`` or ``header.stamp_ns``.
            seq: ``header.seq`` if known (stored modulo 2**32 as the MCAP sequence).
            type_name: message type, to name the channel's schema on first use.
        """
        if self._closed:
            raise LogError(self.path, "write after close")
        cid = self._channel(topic, type_name)
        self._writer.add_message(
            cid,
            log_time=int(log_time_ns),
            data=payload,
            publish_time=int(publish_time_ns),
            sequence=seq & 0xFFFFFFFF,
        )
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self.bytes_written += len(payload)

    def write(self, msg: Any, log_time_ns: int | None = None) -> bytes:
        """Encode ``msg`` with :func:`bus.codec.encode` and append it; returns the payload.

        ``log_time_ns`` defaults to ``msg.header.stamp_ns`` (offline producers).
        """
        h = msg.header
        if self._stamp_seq:
            seq = self._seq.get(h.topic, 0)
            self._seq[h.topic] = seq + 1
            h = dataclasses.replace(h, seq=seq)
            msg = dataclasses.replace(msg, header=h)
        payload = codec.encode(msg)
        self.write_raw(
            h.topic,
            payload,
            h.stamp_ns if log_time_ns is None else log_time_ns,
            h.sent_mono_ns or h.stamp_ns,
            seq=h.seq,
            type_name=type(msg).__name__,
        )
        return payload

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        """Add a metadata record (string -> string map)."""
        self._writer.add_metadata(name, {str(k): str(v) for k, v in data.items()})

    def flush_chunk(self) -> None:
        """Write out the chunk in progress now (bounds what a crash can lose)."""
        self._writer.flush()

    def close(self) -> None:
        """Finish the file (last chunk, indexes, summary, footer). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.finish()
            self._file.fsync()
        finally:
            self._file.close()


# ----------------------------------------------------------------------------------------------
# Tolerant reader.
# ----------------------------------------------------------------------------------------------
class _ChannelInfo(NamedTuple):
    topic: str
    encoding: str
    type_name: str


class LogReader:
    """Sequential reader that survives truncation and corruption.

    Args:
        path: MCAP file.
        stats: collects counts and problems (a new one if None); see :class:`ReadStats`.

    Raises:
        LogError: on open, if the file is missing, empty or not an MCAP file.
    """

    def __init__(self, path: str | Path, stats: ReadStats | None = None) -> None:
        self.path = Path(path)
        self.stats = stats if stats is not None else ReadStats()
        if not self.path.is_file():
            raise LogError(self.path, "no such file")
        size = self.path.stat().st_size
        if size == 0:
            raise LogError(self.path, "empty file (0 bytes), not an MCAP log")
        with open(self.path, "rb") as f:
            magic = f.read(len(MCAP_MAGIC))
        if magic != MCAP_MAGIC:
            raise LogError(self.path, f"not an MCAP file: bad magic {magic[:8]!r}")

    def _problem(self, text: str) -> None:
        self.stats.problems.append(text)
        log.warning("%s: %s", self.path, text)

    def records(self) -> Iterator[tuple[_ChannelInfo, Message]]:
        """Every readable message record with its channel, in file order."""
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            yield from self._walk(buf)

    def _walk(self, buf: mmap.mmap) -> Iterator[tuple[_ChannelInfo, Message]]:
        channels: dict[int, _ChannelInfo] = {}
        schemas: dict[int, str] = {}
        # A finished file repeats every schema and channel in its summary: reading those first
        # keeps the messages of later chunks usable when the chunk that defined them is damaged.
        self._read_summary(buf, schemas, channels)
        size = len(buf)
        pos = len(MCAP_MAGIC)
        hdr = _RECORD_HEADER.size
        while pos < size:
            if size - pos < hdr:
                self._problem(f"truncated at byte {pos}: {size - pos} trailing bytes, no complete record")
                return
            opcode, length = _RECORD_HEADER.unpack_from(buf, pos)
            body_start = pos + hdr
            if opcode not in _KNOWN_OPCODES:
                nxt = self._resync(buf, pos + 1)
                self._problem(
                    f"corrupted record framing at byte {pos} (opcode 0x{opcode:02x}); "
                    + (f"resynchronised at chunk at byte {nxt}" if nxt >= 0 else "no readable chunk after it")
                )
                if nxt < 0:
                    return
                pos = nxt
                continue
            if length > size - body_start:
                if opcode == Opcode.CHUNK or opcode == Opcode.MESSAGE:
                    self._problem(
                        f"truncated at byte {pos}: {Opcode(opcode).name} record needs {length} bytes, "
                        f"only {size - body_start} left (file not finished: crash or copy cut short?)"
                    )
                else:
                    self._problem(f"truncated at byte {pos}: {Opcode(opcode).name} record cut short")
                return
            body = buf[body_start : body_start + length]
            pos = body_start + length
            try:
                if opcode == Opcode.SCHEMA:
                    s = Schema.read(ReadDataStream(io.BytesIO(body)))
                    schemas[s.id] = s.name
                elif opcode == Opcode.CHANNEL:
                    c = Channel.read(ReadDataStream(io.BytesIO(body)))
                    channels[c.id] = _channel_info(c, schemas)
                elif opcode == Opcode.MESSAGE:
                    msg = Message.read(ReadDataStream(io.BytesIO(body)), length)
                    yield from self._emit(channels, msg)
                elif opcode == Opcode.METADATA:
                    md = Metadata.read(ReadDataStream(io.BytesIO(body)))
                    self.stats.metadata[md.name] = dict(md.metadata)
                elif opcode == Opcode.CHUNK:
                    records = _chunk_records(body)
                    for r in records:
                        if isinstance(r, Schema):
                            schemas[r.id] = r.name
                        elif isinstance(r, Channel):
                            channels[r.id] = _channel_info(r, schemas)
                        elif isinstance(r, Message):
                            yield from self._emit(channels, r)
                elif opcode == Opcode.DATA_END:
                    # The summary section follows; it only repeats what we have read.
                    self.stats.complete = self._has_footer(buf)
                    if not self.stats.complete:
                        self._problem(f"summary section after byte {pos} is incomplete (no footer)")
                    return
                elif opcode == Opcode.FOOTER:
                    self.stats.complete = True
                    return
            except Exception as e:  # mcap record parsers and decompressors raise assorted types
                where = Opcode(opcode).name
                nxt = self._resync(buf, pos)
                self._problem(f"corrupted {where} record at byte {body_start - hdr}: {type(e).__name__}: {e}")
                if nxt < 0:
                    return
                pos = nxt
        self._problem(f"file ends at byte {size} without a data-end record or footer (not finished)")

    def _read_summary(
        self, buf: mmap.mmap, schemas: dict[int, str], channels: dict[int, _ChannelInfo]
    ) -> None:
        if not self._has_footer(buf):
            return
        footer_pos = len(buf) - len(MCAP_MAGIC) - 29
        summary_start = struct.unpack_from("<Q", buf, footer_pos + _RECORD_HEADER.size)[0]
        if not 0 < summary_start < footer_pos:
            return
        pos = summary_start
        try:
            while pos < footer_pos:
                opcode, length = _RECORD_HEADER.unpack_from(buf, pos)
                body = buf[pos + _RECORD_HEADER.size : pos + _RECORD_HEADER.size + length]
                if opcode == Opcode.SCHEMA:
                    sc = Schema.read(ReadDataStream(io.BytesIO(body)))
                    schemas[sc.id] = sc.name
                elif opcode == Opcode.CHANNEL:
                    c = Channel.read(ReadDataStream(io.BytesIO(body)))
                    channels[c.id] = _channel_info(c, schemas)
                pos += _RECORD_HEADER.size + length
        except Exception as e:  # a damaged summary is not fatal: the data section is read anyway
            self._problem(f"summary section damaged at byte {pos}: {type(e).__name__}: {e}")

    def _has_footer(self, buf: mmap.mmap) -> bool:
        return len(buf) >= 8 + 29 and buf[-8:] == MCAP_MAGIC and buf[-37] == Opcode.FOOTER

    def _resync(self, buf: mmap.mmap, start: int) -> int:
        """Offset of the next chunk record after ``start`` that decodes with a valid CRC, or -1."""
        size = len(buf)
        pos = start
        while True:
            pos = buf.find(bytes([Opcode.CHUNK]), pos)
            if pos < 0 or size - pos < _RECORD_HEADER.size:
                return -1
            _, length = _RECORD_HEADER.unpack_from(buf, pos)
            end = pos + _RECORD_HEADER.size + length
            if length >= 40 and end <= size:
                try:
                    _chunk_records(buf[pos + _RECORD_HEADER.size : end])
                    return pos
                except Exception:  # not a chunk after all: keep scanning
                    pass
            pos += 1

    def _emit(
        self, channels: dict[int, _ChannelInfo], msg: Message
    ) -> Iterator[tuple[_ChannelInfo, Message]]:
        ch = channels.get(msg.channel_id)
        if ch is None:
            self.stats.skip(f"unknown_channel:{msg.channel_id}")
            return
        yield ch, msg


def _channel_info(c: Channel, schemas: dict[int, str]) -> _ChannelInfo:
    name = schemas.get(c.schema_id, "")
    type_name = c.metadata.get("type") or (
        name[len(SCHEMA_PREFIX) :] if name.startswith(SCHEMA_PREFIX) else ""
    )
    return _ChannelInfo(c.topic, c.message_encoding, type_name)


def _chunk_records(body: bytes) -> list[Any]:
    chunk = Chunk.read(ReadDataStream(io.BytesIO(body)))
    if len(chunk.data) == 0 and chunk.uncompressed_size:
        raise ValueError("chunk data missing")
    return breakup_chunk(chunk, validate_crc=True)


def _matches(topic: str, prefixes: tuple[str, ...] | None) -> bool:
    return prefixes is None or any(topic.startswith(p) for p in prefixes)


def iter_log(
    path: str | Path,
    topics: Iterable[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    *,
    stats: ReadStats | None = None,
    strict: bool = False,
) -> Iterator[LogRecord]:
    """Raw records of a log in file order (time order for logs written by prescient).

    Deterministic, no sockets, no wall clock. Damage is reported in ``stats.problems`` (and
    logged) while every readable message is still yielded.

    Args:
        path: MCAP log.
        topics: topic prefixes to keep (None: all).
        start_ns, end_ns: keep ``start_ns <= log_time_ns < end_ns`` (absolute log time, ns).
        stats: receives counts and problems.
        strict: after yielding every readable record, raise :class:`LogError` if damage was found.

    Raises:
        LogError: missing/empty/non-MCAP file; in strict mode, damage (after yielding).
    """
    stats = stats if stats is not None else ReadStats()
    prefixes = None if topics is None else tuple(topics)
    reader = LogReader(path, stats)
    for ch, rec in reader.records():
        if not _matches(ch.topic, prefixes):
            continue
        if (start_ns is not None and rec.log_time < start_ns) or (
            end_ns is not None and rec.log_time >= end_ns
        ):
            continue
        stats.yielded += 1
        yield LogRecord(ch.topic, rec.log_time, rec.publish_time, bytes(rec.data))
    if strict and stats.problems:
        raise LogError(path, f"damaged log: {'; '.join(stats.problems)}", stats.problems)


def peek_header(payload: bytes) -> tuple[int, int] | None:
    """``(header.seq, header.sent_mono_ns)`` of a msgpack payload without a full decode.

    Returns None when the payload has no readable header (it will be rejected by the codec).
    """
    try:
        unp = msgpack.Unpacker(raw=False, max_buffer_size=max(len(payload), 1024))
        unp.feed(payload)
        n = unp.read_map_header()
        for _ in range(n):
            key = unp.unpack()
            if key == "header":
                h = unp.unpack()
                if not isinstance(h, dict):
                    return None
                seq, sent = h.get("seq"), h.get("sent_mono_ns")
                if not (_is_uint(seq) and _is_uint(sent)):
                    return None
                return seq, sent
            unp.skip()
    except Exception:  # any msgpack error means "no readable header"
        return None
    return None


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    return None


@dataclasses.dataclass
class TopicSummary:
    """Per-topic counts of a log. ``gaps`` counts missing ``seq`` values between recorded ones."""

    topic: str
    type_name: str
    encoding: str
    count: int = 0
    bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    gaps: int = 0
    restarts: int = 0
    _last_seq: int = -1

    @property
    def rate_hz(self) -> float:
        span = (self.last_ns - self.first_ns) / 1e9
        return (self.count - 1) / span if self.count > 1 and span > 0 else 0.0


@dataclasses.dataclass
class LogSummary:
    """Topics, counts, time span and gaps of a log, plus what the reader found wrong."""

    path: str
    topics: dict[str, TopicSummary]
    stats: ReadStats

    @property
    def count(self) -> int:
        return sum(t.count for t in self.topics.values())

    @property
    def start_ns(self) -> int:
        return min((t.first_ns for t in self.topics.values()), default=0)

    @property
    def end_ns(self) -> int:
        return max((t.last_ns for t in self.topics.values()), default=0)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def gaps(self) -> int:
        return sum(t.gaps for t in self.topics.values())


def summarize_log(path: str | Path) -> LogSummary:
    """One pass over a log: per-topic counts, bytes, rates, time span and seq gaps.

    Gaps come from the recorded MCAP ``sequence`` field (``header.seq`` mod 2**32): a jump of
    more than one counts the missing values; a return to 0 counts as a publisher restart.
    """
    stats = ReadStats()
    topics: dict[str, TopicSummary] = {}
    for ch, rec in LogReader(path, stats).records():
        t = topics.get(ch.topic)
        if t is None:
            t = topics[ch.topic] = TopicSummary(ch.topic, ch.type_name, ch.encoding, first_ns=rec.log_time)
        t.count += 1
        t.bytes += len(rec.data)
        t.first_ns = min(t.first_ns, rec.log_time)
        t.last_ns = max(t.last_ns, rec.log_time)
        seq = rec.sequence
        if t._last_seq >= 0:
            if seq == 0 and t._last_seq > 0:
                t.restarts += 1
            elif seq > t._last_seq + 1:
                t.gaps += seq - t._last_seq - 1
        t._last_seq = seq
        stats.yielded += 1
    return LogSummary(str(path), dict(sorted(topics.items())), stats)
