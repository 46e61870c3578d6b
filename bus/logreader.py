"""Resynchronising reader of MCAP logs: every intact chunk comes back, every damage is named.

The reader never trusts one field alone:
  * Records are walked from the start of the file. A chunk is accepted on its own framing and
    its CRC, not on the record's length field, so a chunk whose length field grew, shrank or
    points past the end of the file is still read, and the walk goes on where the chunk really
    ends: a grown length cannot swallow the chunks after it.
  * A record that fails to parse, an opcode that does not belong where it stands (a summary
    record in the data section, a second header, a top-level message in a chunked log) or a
    length past the end of the file makes the reader scan forward, byte by byte, for
    the next record it can prove: a chunk whose CRC matches, a metadata record framed exactly,
    or the real data end.
  * ``DATA_END`` ends the data only when a footer closes the file and points at (or chains to)
    the summary after it; ``FOOTER`` only at its fixed place, 37 bytes before the end of the file,
    followed by the closing magic. Anywhere else they are damage.
  * A chunk identical to one already read (times, size and CRC) is a copy: reported and skipped
    (a recorder never writes one twice: its receive times only grow).
  * Logs written by :class:`~prescient.bus.logfile.LogWriter` carry the CRC of their data section and of
    their summary: damage that leaves every record readable (reordered chunks, changed chunk
    times) is still reported; a damaged summary is reported and not used.
  * Messages whose channel record was lost with a damaged chunk get their topic from the
    ``header.topic`` inside their own payload (prescient msgpack payloads carry it).

Every byte range the reader did not use lands in :attr:`ReadStats.skipped_ranges` as
``(start, end, reason)`` and in :attr:`ReadStats.problems`; every readable message is yielded.
A file that merely stops (a recorder killed with ``kill -9``) has no skipped range, but a problem
saying that it was not finished. Commands exit with :data:`EXIT_DAMAGED` when problems were found.
"""

from __future__ import annotations

import logging
import mmap
import re
import struct
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Final, NamedTuple

from mcap.opcode import Opcode
from mcap.records import Channel, Message, Schema

from prescient.bus import messages as m
from prescient.bus.logfile import PROFILE, SCHEMA_PREFIX, LogError, payload_topic
from prescient.bus.logrecords import (
    FOOTER_BYTES,
    MCAP_MAGIC,
    RECORD_HEADER,
    ChunkFrame,
    RecordError,
    check_message_index,
    chunk_frame,
    chunk_records,
    crc_of,
    footer_at_end,
    opcode_name,
    parse_channel,
    parse_header,
    parse_message,
    parse_metadata,
    parse_schema,
    summary_chains,
)
from prescient.bus.logstats import EXIT_DAMAGED as EXIT_DAMAGED
from prescient.bus.logstats import LogRecord as LogRecord
from prescient.bus.logstats import ReadStats as ReadStats

log = logging.getLogger(__name__)

# Bytes that may start a record the resync can prove: CHUNK, METADATA, DATA_END.
_RESYNC_OPCODES: Final = re.compile(b"[\x06\x0c\x0f]")
# Opcodes a foreign (non-prescient) writer may put in the data section besides chunks.
_FOREIGN_TOP_LEVEL: Final = frozenset({Opcode.SCHEMA, Opcode.CHANNEL, Opcode.MESSAGE, Opcode.ATTACHMENT})
_HDR: Final = RECORD_HEADER.size


class _ChannelInfo(NamedTuple):
    topic: str
    encoding: str
    type_name: str


class LogReader:
    """Sequential reader that survives truncation and corruption (see the module docstring).

    Args:
        path: MCAP file.
        stats: collects counts and problems (a new one if None); see :class:`ReadStats`.

    Raises:
        LogError: on open, if the file is missing, empty, or neither starts with the MCAP magic
            nor holds any record the reader can prove.
    """

    def __init__(self, path: str | Path, stats: ReadStats | None = None) -> None:
        self.path = Path(path)
        self.stats = stats if stats is not None else ReadStats()
        if not self.path.is_file():
            raise LogError(self.path, "no such file")
        if self.path.stat().st_size == 0:
            raise LogError(self.path, "empty file (0 bytes), not an MCAP log")
        with open(self.path, "rb") as f:
            magic = f.read(len(MCAP_MAGIC))
            if magic != MCAP_MAGIC:
                # A damaged first byte must not blind the whole log: read on if records follow.
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                    readable = _Walker(self.path, buf, ReadStats()).next_trusted(0)[0] >= 0
                if not readable:
                    raise LogError(self.path, f"not an MCAP file: bad magic {magic[:8]!r}")

    def records(self) -> Iterator[tuple[_ChannelInfo, Message]]:
        """Every readable message record with its channel, in file order."""
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            yield from _Walker(self.path, buf, self.stats).walk()


_Step = Generator[tuple[_ChannelInfo, Message], None, "int | None"]


class _Walker:
    """One pass over a mapped log file, by the rules of the module docstring."""

    def __init__(self, path: Path, buf: mmap.mmap, stats: ReadStats) -> None:
        self.path, self.buf, self.size, self.stats = path, buf, len(buf), stats
        self.footer = footer_at_end(buf)
        self.footer_pos = self.size - len(MCAP_MAGIC) - FOOTER_BYTES
        self.channels: dict[int, _ChannelInfo] = {}
        self.schemas: dict[int, str] = {}
        self.seen: dict[tuple[int, int, int, int], int] = {}
        self.orphans: set[int] = set()
        self.foreign = False  # the header names another writer, which may write unchunked records
        self.chunked = False  # a chunk was read: no writer mixes chunks with top-level messages
        self.damaged = False  # data-section damage reported (a data CRC mismatch would repeat it)
        self.lost_tail = False
        self._cache: tuple[int, tuple[ChunkFrame, list[Schema | Channel | Message]] | str] = (-1, "")

    # ------------------------------------------------------------------------------------------
    def walk(self) -> Iterator[tuple[_ChannelInfo, Message]]:
        self._read_summary()
        if self.buf[: len(MCAP_MAGIC)] != MCAP_MAGIC:
            what = f"bad magic {bytes(self.buf[: len(MCAP_MAGIC)])!r} at byte 0; read on as MCAP"
            self._damage(0, min(len(MCAP_MAGIC), self.size), what)
        pos: int | None = len(MCAP_MAGIC)
        while pos is not None and pos < self.size:
            pos = yield from self._step(pos)
        if pos is not None and not self.lost_tail:
            self._problem(
                f"file ends at byte {self.size} without a data-end record or footer "
                "(not finished: crash or copy cut short?)"
            )

    def _step(self, pos: int) -> _Step:
        """Read the record at ``pos``; return where the next one starts, None at the data end."""
        left = self.size - pos - _HDR
        if left < 0:
            return self._lose(
                pos, f"truncated at byte {pos}: {self.size - pos} trailing bytes, no complete record"
            )
        opcode, length = RECORD_HEADER.unpack_from(self.buf, pos)
        chunk = self._chunk_at(pos)
        if not isinstance(chunk, str):
            frame, records = chunk
            if frame.crc or (opcode == Opcode.CHUNK and frame.end == pos + _HDR + length):
                return (yield from self._take_chunk(pos, opcode, length, frame, records))
        name = opcode_name(opcode)
        if length > left:
            return self._lose(
                pos,
                f"{name} record at byte {pos} claims {length} bytes, only {left} left: length damaged",
                last=f"truncated at byte {pos}: {name} record needs {length} bytes, only {left} left "
                "(file not finished: crash or copy cut short?)",
            )
        if opcode == Opcode.CHUNK:
            reason = (
                chunk if isinstance(chunk, str) else "its framing disagrees with its length and it has no CRC"
            )
            return self._lose(pos, f"corrupted CHUNK record at byte {pos}: {reason}")
        if opcode in (Opcode.DATA_END, Opcode.FOOTER):
            return self._end_record(pos, opcode, length)
        return (yield from self._plain_record(pos, opcode, name, pos + _HDR + length))

    def _end_record(self, pos: int, opcode: int, length: int) -> int | None:
        """A DATA_END or FOOTER record: the end where it really is one, else damage."""
        if opcode == Opcode.DATA_END:
            if self._is_data_end(pos, length):
                self._end_of_data(pos)
                return None
            what = "is not followed by a valid summary and footer"
            if self.footer is None:
                what = "but the file does not end with a footer (cut short after the data?)"
            return self._lose(pos, f"DATA_END record at byte {pos} {what}")
        if pos == self.footer_pos and self.footer is not None:
            self.stats.complete = True
            if not self.damaged:
                self._problem(f"footer at byte {pos} follows the data without a data-end record")
            return None
        return self._lose(
            pos, f"FOOTER record at byte {pos} is not the footer (that starts at byte {self.footer_pos})"
        )

    def _plain_record(self, pos: int, opcode: int, name: str, end: int) -> _Step:
        """A header, message index, metadata or (foreign file) top-level record."""
        try:
            if opcode == Opcode.HEADER and pos == len(MCAP_MAGIC):
                self.foreign = not parse_header(self.buf, pos + _HDR, end)[1].startswith(PROFILE)
                return end
            if opcode == Opcode.MESSAGE_INDEX:
                check_message_index(self.buf, pos + _HDR, end)
                return end
            if opcode == Opcode.METADATA:
                md = parse_metadata(self.buf, pos + _HDR, end)
                self.stats.metadata[md.name] = dict(md.metadata)
                return end
            if self.foreign and not self.chunked and opcode in _FOREIGN_TOP_LEVEL:
                yield from self._take_records(self._top_level(opcode, pos + _HDR, end))
                return end
        except RecordError as e:
            return self._lose(pos, f"corrupted {name} record at byte {pos}: {e}")
        return self._lose(pos, f"corrupted record framing at byte {pos} (opcode {name} does not belong here)")

    def _top_level(self, opcode: int, lo: int, hi: int) -> list[Schema | Channel | Message]:
        if opcode == Opcode.SCHEMA:
            return [parse_schema(self.buf, lo, hi)]
        if opcode == Opcode.CHANNEL:
            return [parse_channel(self.buf, lo, hi)]
        if opcode == Opcode.MESSAGE:
            return [parse_message(self.buf, lo, hi)]
        return []  # an attachment: nothing to replay

    def _take_chunk(
        self, pos: int, opcode: int, length: int, frame: ChunkFrame, records: list[Schema | Channel | Message]
    ) -> _Step:
        true_length = frame.end - pos - _HDR
        notes = []
        if opcode != Opcode.CHUNK:
            notes.append(f"opcode {opcode_name(opcode)} where a valid chunk is")
        if length != true_length:
            notes.append(f"length field {length}, the chunk's own framing {true_length}")
        if notes:
            what = f"corrupted record framing at byte {pos} ({'; '.join(notes)})"
            lo = pos if opcode != Opcode.CHUNK else pos + 1
            hi = pos + _HDR if length != true_length else pos + 1
            self._damage(
                lo,
                hi,
                what,
                f"{what}: read the chunk by its own framing and CRC, resynchronised at byte {frame.end}",
            )
        self.chunked = True
        if frame.crc:
            first = self.seen.setdefault(frame.key, pos)
            if first != pos:
                what = f"duplicate chunk at byte {pos} (same content as the chunk at byte {first})"
                self._damage(pos, frame.end, what, f"{what}; skipped bytes {pos}..{frame.end}")
                return frame.end
        yield from self._take_records(records)
        return frame.end

    def _take_records(
        self, records: list[Schema | Channel | Message]
    ) -> Iterator[tuple[_ChannelInfo, Message]]:
        for r in records:
            if isinstance(r, Schema):
                self.schemas[r.id] = r.name
            elif isinstance(r, Channel):
                self.channels[r.id] = _channel_info(r, self.schemas)
            else:
                ch = self._channel_of(r)
                if ch is not None:
                    yield ch, r

    def _channel_of(self, msg: Message) -> _ChannelInfo | None:
        ch = self.channels.get(msg.channel_id)
        if ch is not None:
            return ch
        # Any writer's msgpack payload with a prescient header names its topic; others give None.
        topic = payload_topic(msg.data)
        if topic is None:
            self.stats.skip(f"unknown_channel:{msg.channel_id}")
            return None
        if msg.channel_id not in self.orphans:
            self.orphans.add(msg.channel_id)
            self._problem(
                f"channel {msg.channel_id} has no channel record (lost with damaged data): "
                "the topic of its messages is taken from each payload's header"
            )
        cls = m.topic_type(topic)
        return _ChannelInfo(topic, "msgpack", cls.__name__ if cls is not None else "")

    # ------------------------------------------------------------------------------------------
    def _chunk_at(self, pos: int) -> tuple[ChunkFrame, list[Schema | Channel | Message]] | str:
        """The chunk framed at ``pos`` (opcode and length ignored) with its records, or why not."""
        if self._cache[0] != pos:
            try:
                frame = chunk_frame(self.buf, pos)
                self._cache = (pos, (frame, chunk_records(self.buf, frame)))
            except RecordError as e:
                self._cache = (pos, str(e))
        return self._cache[1]

    def next_trusted(self, start: int) -> tuple[int, str]:
        """First offset at or after ``start`` of a record the reader can prove, and its kind; (-1, "")."""
        for hit in _RESYNC_OPCODES.finditer(self.buf, start):
            p = hit.start()
            if self.size - p < _HDR:
                break
            opcode, length = RECORD_HEADER.unpack_from(self.buf, p)
            if opcode == Opcode.CHUNK:
                chunk = self._chunk_at(p)
                if not isinstance(chunk, str) and chunk[0].crc:
                    return p, "chunk"
            elif opcode == Opcode.METADATA and length <= self.size - p - _HDR:
                try:
                    parse_metadata(self.buf, p + _HDR, p + _HDR + length)
                    return p, "metadata record"
                except RecordError:
                    pass
            elif opcode == Opcode.DATA_END and self._is_data_end(p, length):
                return p, "data end"
        if self.footer is not None and len(MCAP_MAGIC) <= start <= self.footer_pos:
            return self.footer_pos, "footer"
        return -1, ""

    def _lose(self, pos: int, what: str, last: str | None = None) -> int:
        """Skip from ``pos`` to the next provable record (or the end); report it; return where."""
        nxt, kind = self.next_trusted(pos + 1)
        if nxt < 0:
            self.lost_tail = True
            what, end, tail = last or what, self.size, "no readable record after it"
        else:
            end, tail = nxt, f"resynchronised at {kind} at byte {nxt}"
        self._damage(pos, end, what, f"{what}; skipped bytes {pos}..{end} ({end - pos} bytes), {tail}")
        return end

    def _is_data_end(self, pos: int, length: int) -> bool:
        after = pos + _HDR + length
        if length != 4 or self.footer is None or after > self.footer_pos:
            return False
        start = self.footer.summary_start
        if start == after or (start == 0 and after == self.footer_pos):
            return True
        return summary_chains(self.buf, after, self.footer_pos)

    def _end_of_data(self, pos: int) -> None:
        self.stats.complete = True
        (crc,) = struct.unpack_from("<I", self.buf, pos + _HDR)
        if crc and not self.damaged and crc_of(self.buf, 0, pos) != crc:
            self._problem(
                f"data section CRC mismatch (bytes 0..{pos}): the file changed after it was written "
                "although every record reads cleanly (reordered, duplicated or altered chunks?)"
            )

    def _read_summary(self) -> None:
        """Schemas and channels of the summary section, so chunks whose defining chunk is
        damaged keep their topics. A summary that fails its CRC is reported and not used."""
        f = self.footer
        if f is None or f.summary_start == 0:
            return
        lo, hi = f.summary_start, self.footer_pos
        if not len(MCAP_MAGIC) < lo <= hi:
            self._problem(f"footer points to a summary at byte {lo}, outside the data; summary not used")
            return
        # The CRC covers the summary and the footer up to its own CRC field.
        if f.summary_crc and crc_of(self.buf, lo, hi + _HDR + 16) != f.summary_crc:
            why = "summary section damaged (CRC mismatch), not used"
            self.stats.skipped_ranges.append((lo, hi, why))
            self._problem(f"{why}; skipped bytes {lo}..{hi}, the data section is read without it")
            return
        schemas: dict[int, str] = {}
        channels: list[Channel] = []
        pos = lo
        try:
            while pos < hi:
                if hi - pos < _HDR:
                    raise RecordError("record header cut short")
                opcode, length = RECORD_HEADER.unpack_from(self.buf, pos)
                end = pos + _HDR + length
                if length > hi - pos - _HDR:
                    raise RecordError(f"{opcode_name(opcode)} runs into the footer")
                if opcode == Opcode.SCHEMA:
                    s = parse_schema(self.buf, pos + _HDR, end)
                    schemas[s.id] = s.name
                elif opcode == Opcode.CHANNEL:
                    channels.append(parse_channel(self.buf, pos + _HDR, end))
                pos = end
        except RecordError as e:
            why = f"summary section damaged at byte {pos}: {e}; not used"
            self.stats.skipped_ranges.append((lo, hi, why))
            self._problem(f"{why}; skipped bytes {lo}..{hi}")
            return
        self.schemas.update(schemas)
        self.channels.update({c.id: _channel_info(c, schemas) for c in channels})

    def _damage(self, lo: int, hi: int, reason: str, text: str | None = None) -> None:
        self.damaged = True
        self.stats.skipped_ranges.append((lo, hi, reason))
        self._problem(text or f"{reason}; skipped bytes {lo}..{hi}")

    def _problem(self, text: str) -> None:
        self.stats.problems.append(text)
        log.warning("%s: %s", self.path, text)


def _channel_info(c: Channel, schemas: dict[int, str]) -> _ChannelInfo:
    name = schemas.get(c.schema_id, "")
    type_name = c.metadata.get("type") or (
        name[len(SCHEMA_PREFIX) :] if name.startswith(SCHEMA_PREFIX) else ""
    )
    return _ChannelInfo(c.topic, c.message_encoding, type_name)


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

    Deterministic, no sockets, no wall clock. Damage is reported in ``stats.problems`` and
    ``stats.skipped_ranges`` (and logged) while every readable message is still yielded.

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
