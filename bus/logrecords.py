"""Strict parsers for the MCAP records of a log, used by the resynchronising reader.

The mcap package's own parsers trust lengths: ``ReadDataStream.read`` returns short data at the
end of a buffer instead of failing, ``Chunk.read`` ignores bytes after its records field, and
decompression is sized by a field of the damaged file. A reader that must tell damage from data
needs every field bounded and every record's own framing to end exactly where it should. Each
parser here raises :class:`RecordError` (a ``ValueError``) naming what is wrong; nothing else
escapes them, whatever the bytes.

Offsets are byte offsets into the file (or into a chunk's decompressed records); lengths are bytes.
"""

from __future__ import annotations

import dataclasses
import mmap
import struct
import zlib
from typing import Final

import lz4.frame
import zstandard
from mcap.opcode import Opcode
from mcap.records import Channel, Footer, Message, Metadata, Schema

Buf = bytes | bytearray | memoryview | mmap.mmap  # a whole log file, read or memory-mapped

MCAP_MAGIC: Final = b"\x89MCAP0\r\n"
RECORD_HEADER: Final = struct.Struct("<BQ")  # opcode, body length
FOOTER_BYTES: Final = RECORD_HEADER.size + 20  # opcode, length, summary_start, summary_offset_start, crc
# Largest decompressed chunk accepted. A damaged size field must not make the reader allocate
# gigabytes; prescient writes 1 MiB chunks, other MCAP writers a few MiB.
MAX_CHUNK_BYTES: Final = 1 << 30
_CHUNK_FIXED: Final = struct.Struct("<QQQI")  # message_start_time, message_end_time, size, crc
_MESSAGE_FIXED: Final = struct.Struct("<HIQQ")  # channel_id, sequence, log_time, publish_time
_COMPRESSIONS: Final = frozenset({"", "zstd", "lz4"})
_READ_STEP: Final = 1 << 20
SUMMARY_OPCODES: Final = frozenset(
    {
        Opcode.SCHEMA,
        Opcode.CHANNEL,
        Opcode.CHUNK_INDEX,
        Opcode.ATTACHMENT_INDEX,
        Opcode.METADATA_INDEX,
        Opcode.STATISTICS,
        Opcode.SUMMARY_OFFSET,
    }
)


class RecordError(ValueError):
    """Bytes that do not form the record they should; the message says which field and why."""


def opcode_name(opcode: int) -> str:
    """``CHUNK``, ``FOOTER``, ... or ``0xee`` for a byte that is no MCAP opcode."""
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"0x{opcode:02x}"


class _Cursor:
    """Bounded little-endian reads over ``data[pos:end]``; every overrun is a RecordError."""

    def __init__(self, data: Buf, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def _advance(self, n: int, what: str) -> int:
        if n > self.end - self.pos:
            raise RecordError(f"{what} needs {n} bytes, {self.end - self.pos} left")
        start = self.pos
        self.pos += n
        return start

    def unpack(self, st: struct.Struct, what: str) -> tuple[int, ...]:
        return st.unpack_from(self.data, self._advance(st.size, what))

    def u16(self, what: str) -> int:
        return int.from_bytes(self.data[self._advance(2, what) : self.pos], "little")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.data[self._advance(4, what) : self.pos], "little")

    def u64(self, what: str) -> int:
        return int.from_bytes(self.data[self._advance(8, what) : self.pos], "little")

    def take(self, n: int, what: str) -> bytes:
        return bytes(self.data[self._advance(n, what) : self.pos])

    def string(self, what: str) -> str:
        raw = self.take(self.u32(f"{what} length"), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RecordError(f"{what} is not UTF-8") from e

    def string_map(self, what: str) -> dict[str, str]:
        n = self.u32(f"{what} length")
        inner = _Cursor(self.data, self._advance(n, what), self.pos)
        out: dict[str, str] = {}
        while inner.pos < inner.end:
            key = inner.string(f"{what} key")
            out[key] = inner.string(f"{what} value")
        return out

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise RecordError(f"{what} ends {self.end - self.pos} bytes before its length says")


@dataclasses.dataclass(frozen=True)
class ChunkFrame:
    """The fields of a chunk record read by its own framing (not by the record's length field).

    Attributes:
        pos: file offset of the record's opcode byte.
        end: file offset just after the chunk's records field, where the next record starts.
        start_ns, end_ns: message time range claimed by the chunk.
        size: decompressed size of the records, bytes.
        crc: CRC-32 of the decompressed records (0: none written).
        compression: ``""``, ``"zstd"`` or ``"lz4"``.
        data_lo, data_hi: file offsets of the compressed records.
    """

    pos: int
    end: int
    start_ns: int
    end_ns: int
    size: int
    crc: int
    compression: str
    data_lo: int
    data_hi: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        """Identity of the chunk's content, to recognise a duplicated chunk."""
        return self.start_ns, self.end_ns, self.size, self.crc


def chunk_frame(buf: Buf, pos: int) -> ChunkFrame:
    """Read the chunk whose record starts at ``pos``, ignoring the opcode and length fields.

    Args:
        buf: the whole file (bytes or mmap).
        pos: offset of the record's opcode byte.

    Raises:
        RecordError: the bytes after the record header do not frame a chunk inside the file.
    """
    c = _Cursor(buf, pos + RECORD_HEADER.size, len(buf))
    start_ns, end_ns, size, crc = c.unpack(_CHUNK_FIXED, "chunk header")
    n = c.u32("compression length")
    if n > 8:
        raise RecordError(f"compression name of {n} bytes")
    compression = c.take(n, "compression").decode("ascii", errors="replace")
    if compression not in _COMPRESSIONS:
        raise RecordError(f"unknown compression {compression!r}")
    data_len = c.u64("records length")
    lo = c._advance(data_len, "compressed records")
    return ChunkFrame(pos, c.pos, start_ns, end_ns, size, crc, compression, lo, c.pos)


def chunk_records(buf: Buf, frame: ChunkFrame) -> list[Schema | Channel | Message]:
    """Decompress a chunk, check its CRC and parse every record in it.

    Raises:
        RecordError: decompression fails, the size or CRC differs, or a record is malformed.
    """
    data = decompress(frame.compression, bytes(buf[frame.data_lo : frame.data_hi]), frame.size)
    if frame.crc and zlib.crc32(data) != frame.crc:
        raise RecordError(f"CRC mismatch (stored 0x{frame.crc:08x}, computed 0x{zlib.crc32(data):08x})")
    out: list[Schema | Channel | Message] = []
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < RECORD_HEADER.size:
            raise RecordError(f"record header cut short at chunk offset {pos}")
        opcode, length = RECORD_HEADER.unpack_from(data, pos)
        lo = pos + RECORD_HEADER.size
        if length > n - lo:
            raise RecordError(f"{opcode_name(opcode)} at chunk offset {pos} runs past the chunk")
        if opcode == Opcode.SCHEMA:
            out.append(parse_schema(data, lo, lo + length))
        elif opcode == Opcode.CHANNEL:
            out.append(parse_channel(data, lo, lo + length))
        elif opcode == Opcode.MESSAGE:
            out.append(parse_message(data, lo, lo + length))
        # The MCAP spec puts only these three in a chunk; readers skip any other record.
        pos = lo + length
    return out


def decompress(compression: str, data: bytes, size: int) -> bytes:
    """Decompressed chunk records, never more than ``size`` bytes allocated.

    Raises:
        RecordError: corrupt compressed data, or a decompressed size other than ``size``.
    """
    if size > MAX_CHUNK_BYTES:
        raise RecordError(f"decompressed size {size} over the {MAX_CHUNK_BYTES}-byte limit")
    try:
        if compression == "zstd":
            out = _zstd(data, size)
        elif compression == "lz4":
            out = _lz4(data, size)
        else:
            out = data
    except (zstandard.ZstdError, RuntimeError) as e:  # lz4.frame raises RuntimeError on bad data
        raise RecordError(f"{compression} data corrupt: {e}") from e
    if len(out) != size:
        raise RecordError(
            f"decompressed to {len(out)}{'+' if len(out) > size else ''} bytes, expected {size}"
        )
    return out


def _zstd(data: bytes, size: int) -> bytes:
    declared = zstandard.frame_content_size(data)
    if declared >= 0 and declared != size:
        raise RecordError(f"zstd frame holds {declared} bytes, chunk says {size}")
    parts: list[bytes] = []
    got = 0
    with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as r:
        while got <= size:
            piece = r.read(min(_READ_STEP, size + 1 - got))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
    return b"".join(parts)


def _lz4(data: bytes, size: int) -> bytes:
    d = lz4.frame.LZ4FrameDecompressor()
    parts = [d.decompress(data, max_length=min(_READ_STEP, size + 1))]
    got = len(parts[0])
    while not d.eof and got <= size and not d.needs_input:
        piece = d.decompress(b"", max_length=min(_READ_STEP, size + 1 - got))
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    if not d.eof and got <= size:
        raise RecordError("lz4 frame cut short")
    return b"".join(parts)


def parse_schema(data: Buf, lo: int, hi: int) -> Schema:
    """Schema record body ``data[lo:hi]`` (id, name, encoding, data), framed exactly."""
    c = _Cursor(data, lo, hi)
    sid = c.u16("schema id")
    name = c.string("schema name")
    encoding = c.string("schema encoding")
    body = c.take(c.u32("schema data length"), "schema data")
    c.done("SCHEMA")
    return Schema(id=sid, name=name, encoding=encoding, data=body)


def parse_channel(data: Buf, lo: int, hi: int) -> Channel:
    """Channel record body ``data[lo:hi]``, framed exactly."""
    c = _Cursor(data, lo, hi)
    cid = c.u16("channel id")
    schema_id = c.u16("schema id")
    topic = c.string("topic")
    encoding = c.string("message encoding")
    meta = c.string_map("channel metadata")
    c.done("CHANNEL")
    return Channel(id=cid, topic=topic, message_encoding=encoding, metadata=meta, schema_id=schema_id)


def parse_message(data: Buf, lo: int, hi: int) -> Message:
    """Message record body ``data[lo:hi]``: fixed fields, then the payload up to ``hi``."""
    c = _Cursor(data, lo, hi)
    cid, seq, log_time, publish_time = c.unpack(_MESSAGE_FIXED, "message header")
    payload = c.take(hi - c.pos, "payload")
    return Message(channel_id=cid, sequence=seq, log_time=log_time, publish_time=publish_time, data=payload)


def parse_metadata(data: Buf, lo: int, hi: int) -> Metadata:
    """Metadata record body ``data[lo:hi]`` (name, string map), framed exactly."""
    c = _Cursor(data, lo, hi)
    name = c.string("metadata name")
    meta = c.string_map("metadata map")
    c.done("METADATA")
    return Metadata(name=name, metadata=meta)


def check_message_index(data: Buf, lo: int, hi: int) -> None:
    """A message index body: channel id, then (log_time, offset) pairs, framed exactly."""
    c = _Cursor(data, lo, hi)
    c.u16("channel id")
    n = c.u32("index length")
    if n % 16:
        raise RecordError(f"index of {n} bytes is not a list of 16-byte entries")
    c.take(n, "index entries")
    c.done("MESSAGE_INDEX")


def parse_header(data: Buf, lo: int, hi: int) -> tuple[str, str]:
    """Header record body: ``(profile, library)``, framed exactly."""
    c = _Cursor(data, lo, hi)
    profile, library = c.string("profile"), c.string("library")
    c.done("HEADER")
    return profile, library


def footer_at_end(buf: Buf) -> Footer | None:
    """The footer record before the closing magic, or None when the file does not end with one."""
    pos = len(buf) - len(MCAP_MAGIC) - FOOTER_BYTES
    if pos < len(MCAP_MAGIC) or buf[-len(MCAP_MAGIC) :] != MCAP_MAGIC:
        return None
    opcode, length = RECORD_HEADER.unpack_from(buf, pos)
    if opcode != Opcode.FOOTER or length != FOOTER_BYTES - RECORD_HEADER.size:
        return None
    start, offsets, crc = struct.unpack_from("<QQI", buf, pos + RECORD_HEADER.size)
    return Footer(summary_start=start, summary_offset_start=offsets, summary_crc=crc)


def summary_chains(buf: Buf, lo: int, hi: int) -> bool:
    """True if ``buf[lo:hi]`` is a sequence of summary-section records ending exactly at ``hi``."""
    pos = lo
    while pos < hi:
        if hi - pos < RECORD_HEADER.size:
            return False
        opcode, length = RECORD_HEADER.unpack_from(buf, pos)
        if opcode not in SUMMARY_OPCODES or length > hi - pos - RECORD_HEADER.size:
            return False
        pos += RECORD_HEADER.size + length
    return pos == hi


def crc_of(buf: Buf, lo: int, hi: int) -> int:
    """CRC-32 of ``buf[lo:hi]``, read in pieces so a large mmap is never copied whole."""
    crc = 0
    for p in range(lo, hi, 16 * _READ_STEP):
        crc = zlib.crc32(buf[p : min(hi, p + 16 * _READ_STEP)], crc)
    return crc
