"""MCAP log files: the writer for raw msgpack payloads, and what writer and reader share.

Layout of a prescient log:
  * One MCAP channel per bus topic, ``message_encoding="msgpack"`` (MCAP well-known
    ``MessageEncoding.MessagePack``). The channel's schema is named ``prescient.<TypeName>``
    (encoding ``jsonschema``; it describes the msgpack wire form of :mod:`prescient.bus.codec`) and carries
    the schema version in the channel metadata. Topics with no fixed type get schema id 0.
  * Message ``data`` is the raw msgpack payload exactly as it crossed the bus (bit-exact replay).
  * ``log_time``: for live recordings, ``time.monotonic_ns()`` of the recording host at receive;
    for offline producers (simulator logs, importers) the message's ``header.stamp_ns``.
    ``publish_time``: ``header.sent_mono_ns`` when the sender set it, else ``header.stamp_ns``.
    ``sequence``: ``header.seq`` modulo 2**32.
  * Chunked, zstd-compressed (lz4 or none selectable), each chunk with the CRC of its records;
    the data-end record holds the CRC of the whole data section and the footer that of the
    summary, so the reader can tell any damage from data. Each chunk is written to the OS as
    soon as it is complete, so after a crash (``kill -9``) every chunk written can still be read.
  * Metadata records named ``prescient.*`` (string map) hold recorder statistics (seq gaps).

A writer never destroys an existing log: :class:`LogWriter` refuses a path that holds data
(:class:`LogExistsError`) unless the caller passes ``overwrite=True`` (offline producers that
regenerate their output, with a warning in the log). The recorder writes the next part instead
(:func:`prescient.bus.recorder.log_parts`). Reading is in :mod:`prescient.bus.logreader`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Final

import msgpack
import numpy as np
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.bus.errors import BusError

log = logging.getLogger(__name__)

PROFILE: Final = "prescient"
LIBRARY: Final = "prescient.bus.logfile"
SCHEMA_PREFIX: Final = "prescient."
DEFAULT_CHUNK_BYTES: Final = 1024 * 1024
_COMPRESSION: Final = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}


MAX_CHANNELS: Final = 4096  # per log part; MCAP allows 65,535
MAX_TOPIC_CHARS: Final = 256
OVERFLOW_TOPIC: Final = "_overflow"  # where payloads of topics beyond those limits go


class LogError(BusError):
    """A log file that cannot be read at all (missing, empty, not MCAP), or, in strict mode,
    one with damage. ``problems`` lists every problem found, each naming offset and reason."""

    def __init__(self, path: str | Path, reason: str, problems: list[str] | None = None) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.problems = str(path), reason, list(problems or [])


class LogExistsError(LogError):
    """A writer was given a path that already holds data and was not told to overwrite it."""


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
    immediately, so a killed process loses only the chunk still being built in memory.

    Opening never truncates unless ``overwrite``: a new file is created exclusively (``O_EXCL``);
    an existing empty file is reused in append mode; an existing non-empty one is refused.
    """

    def __init__(self, path: Path, overwrite: bool) -> None:
        if overwrite:
            size = path.stat().st_size if path.is_file() else 0
            if size:
                log.warning("overwriting %s (%d bytes), as asked", path, size)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        else:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                # O_APPEND: even if another process wrote since the size check, nothing is overwritten.
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
                size = os.fstat(fd).st_size
                if size:
                    os.close(fd)
                    raise LogExistsError(
                        path, f"already holds {size} bytes; refusing to overwrite it (pass overwrite=True)"
                    ) from None
        self._f = open(fd, "wb", buffering=0)  # noqa: SIM115 - closed in close()

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


def refuse_existing(path: str | Path, *, overwrite: bool = False) -> None:
    """Raise :class:`LogExistsError` if ``path`` holds data and ``overwrite`` is False.

    For producers that work a long time before opening their :class:`LogWriter` (importers):
    they fail at once instead of at the end. The writer checks again when it opens the file.
    """
    p = Path(path)
    if not overwrite and p.is_file() and p.stat().st_size:
        raise LogExistsError(p, f"already holds {p.stat().st_size} bytes; refusing to overwrite it")


class LogWriter:
    """Writes a prescient MCAP log. Use as a context manager; ``close()`` finishes the file.

    Args:
        path: output file. It must not exist or be empty, unless ``overwrite``.
        compression: ``"zstd"`` (default), ``"lz4"`` or ``"none"``.
        chunk_bytes: uncompressed chunk size at which a chunk is written out.
        stamp_seq: in :meth:`write`, replace ``header.seq`` by a per-topic counter (0, 1, ...).
        overwrite: replace an existing file (logged as a warning). Only for offline producers
            whose output can be made again; a recorder never passes it.

    Raises:
        LogExistsError: ``path`` holds data and ``overwrite`` is False (the file is untouched).
        OSError: the file cannot be created.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        compression: str = "zstd",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        stamp_seq: bool = True,
        overwrite: bool = False,
    ) -> None:
        if compression not in _COMPRESSION:
            raise ValueError(f"compression must be one of {sorted(_COMPRESSION)}, got {compression!r}")
        self.path = Path(path)
        self._file = _UnbufferedFile(self.path, overwrite)
        self._writer = Writer(
            self._file,  # type: ignore[arg-type]  # a file object in all but name (write, tell, flush)
            chunk_size=chunk_bytes,
            compression=_COMPRESSION[compression],
            enable_data_crcs=True,  # lets the reader notice damage no record shows (reordered chunks)
        )
        self._writer.start(profile=PROFILE, library=LIBRARY)
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

    def _channel_topic(self, topic: str) -> str:
        """``topic``, or ``OVERFLOW_TOPIC`` for one that cannot have a channel of its own.

        MCAP channel ids are 16-bit and every channel is repeated in the summary: a flood of
        made-up topics (or one 1 MB topic name) must not end or bloat the recording. Their
        payloads are still written, bit-exact, on one shared channel (a decodable payload names
        its topic in its own header).
        """
        if topic in self._channels:
            return topic
        if len(self._channels) >= MAX_CHANNELS or len(topic) > MAX_TOPIC_CHARS or not topic.isprintable():
            return OVERFLOW_TOPIC
        return topic

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
        topic = self._channel_topic(topic)
        cid = self._channel(topic, type_name if topic != OVERFLOW_TOPIC else None)
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
        """Encode ``msg`` with :func:`prescient.bus.codec.encode` and append it; returns the payload.

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


def _peek_header(payload: bytes) -> dict[Any, Any] | None:
    try:
        unp = msgpack.Unpacker(raw=False, max_buffer_size=max(len(payload), 1024))
        unp.feed(payload)
        n = unp.read_map_header()
        for _ in range(n):
            key = unp.unpack()
            if key == "header":
                h = unp.unpack()
                return h if isinstance(h, dict) else None
            unp.skip()
    except Exception:  # msgpack raises assorted types; any of them means "no readable header"
        return None
    return None


def peek_header(payload: bytes) -> tuple[int, int] | None:
    """``(header.seq, header.sent_mono_ns)`` of a msgpack payload without a full decode.

    Returns None when the payload has no readable header (it will be rejected by the codec).
    """
    h = _peek_header(payload)
    if h is None:
        return None
    seq, sent = h.get("seq"), h.get("sent_mono_ns")
    if not (isinstance(seq, int) and isinstance(sent, int) and _is_uint(seq) and _is_uint(sent)):
        return None
    return seq, sent


def peek_stamp(payload: bytes) -> int | None:
    """``header.stamp_ns`` (capture time) of a msgpack payload without a full decode, or None."""
    h = _peek_header(payload)
    stamp = None if h is None else h.get("stamp_ns")
    if not isinstance(stamp, int) or not _is_uint(stamp) or stamp >= 2**63:
        return None
    return stamp


def payload_topic(payload: bytes) -> str | None:
    """``header.topic`` of a msgpack payload without a full decode, or None if it has none."""
    h = _peek_header(payload)
    topic = None if h is None else h.get("topic")
    return topic if isinstance(topic, str) and topic else None


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
