"""Named exceptions of the bus layer. Each message names the topic, field and reason."""

from __future__ import annotations


class BusError(Exception):
    """Base class of every bus error."""


class DecodeError(BusError):
    """A payload that must be rejected: not msgpack, wrong schema, bad field, too large."""

    def __init__(self, topic: str, reason: str, n_bytes: int, field: str = "") -> None:
        where = f"{topic}.{field}" if field else topic
        super().__init__(f"{where}: {reason} ({n_bytes} bytes)")
        self.topic, self.field, self.reason, self.n_bytes = topic, field, reason, n_bytes


class EncodeError(BusError):
    """A message that cannot be put on the wire (wrong dtype/shape, non-finite values)."""


class TransportError(BusError):
    """Socket-level failure: endpoint will not bind, request timed out, peer gone."""


class RequestTimeout(TransportError):
    """A request/reply round trip did not complete in time."""


class StartupError(Exception):
    """A problem that stops a command before it runs (bad config, missing file, busy port).

    Raised by command handlers; ``prescient`` prints it as one clear line and exits 1.
    """
