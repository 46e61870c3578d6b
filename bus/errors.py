"""Named exceptions of the bus layer. Each message names the topic, field and reason."""

from __future__ import annotations


class BusError(Exception):
    """Base class of every bus error."""


class DecodeError(BusError):
    """A payload that must be rejected: not msgpack, wrong schema, bad field, too large.

    ``code`` is one identifier of a small fixed set (``DECODE_CODES``) for counters: the text of
    ``reason`` and even ``field`` can carry values chosen by the sender, a counter key must not.
    """

    def __init__(self, topic: str, reason: str, n_bytes: int, field: str = "", code: str = "invalid") -> None:
        where = f"{topic}.{field}" if field else topic
        super().__init__(f"{where}: {reason} ({n_bytes} bytes)")
        self.topic, self.field, self.reason, self.n_bytes = topic, field, reason, n_bytes
        self.code = code if code in DECODE_CODES else "invalid"


DECODE_CODES = frozenset(
    {
        "too_large", "not_msgpack", "not_a_map", "unknown_type", "wrong_type_for_topic", "header",
        "schema_version", "topic_mismatch", "missing_keys", "unexpected_keys", "bad_array",
        "dtype", "shape", "non_finite", "scalar_type", "too_long", "csr", "invalid", "internal",
    }
)  # fmt: skip


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


# The optional package -> the extra of pyproject.toml that installs it.
EXTRA_OF_PACKAGE = {
    "torch": "train",
    "onnx": "train",
    "onnxscript": "train",
    "onnxruntime": "cpu",
    "matplotlib": "eval",
    "motmetrics": "eval",
    "pandas": "data",
    "pyarrow": "data",
    "zarr": "data",
    "numcodecs": "data",
}


class MissingExtraError(StartupError):
    """An optional package a command needs is not installed; ``prescient`` exits 2 with the hint."""

    def __init__(self, package: str, extra: str | None = None) -> None:
        extra = extra or EXTRA_OF_PACKAGE.get(package)
        hint = f"pip install 'prescient[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"this command needs the optional package {package!r}: {hint}")
        self.package, self.extra = package, extra


def missing_extra(error: ModuleNotFoundError) -> MissingExtraError | None:
    """The :class:`MissingExtraError` for an optional package that failed to import, else None."""
    top = (error.name or "").split(".")[0]
    return MissingExtraError(top) if top in EXTRA_OF_PACKAGE else None
