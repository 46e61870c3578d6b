"""Bus configuration (pydantic at the edge; validated once, then plain values)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_BUS: Final = "PRESCIENT_BUS"
_PORT_OFFSETS: Final = {"pub": 0, "sub": 1, "map": 2, "conditional": 3}


def default_endpoint(name: str) -> str:
    """Default endpoint ``name`` (pub, sub, map, conditional).

    ``$PRESCIENT_BUS`` moves the whole bus: ``tcp://HOST:PORT`` uses PORT..PORT+3, and
    ``ipc:///path/prefix`` uses ``ipc:///path/prefix-<name>``. Unset: loopback ports 5550-5553.
    This lets several stacks (tests, benchmarks) run side by side without editing every command.
    ``$PRESCIENT_BUS_PUB`` (``_SUB``, ``_MAP``, ``_CONDITIONAL``) set one endpoint outright, e.g.
    ``tcp://*:5550`` on the side that binds and ``tcp://bus:5550`` on the sides that connect
    (containers on a compose network).
    """
    explicit = os.environ.get(f"{ENV_BUS}_{name.upper()}", "").strip()
    if explicit:
        return explicit
    base = os.environ.get(ENV_BUS, "").strip() or "tcp://127.0.0.1:5550"
    if base.startswith("tcp://"):
        host, _, port = base[len("tcp://") :].rpartition(":")
        if not port.isdigit():
            raise ValueError(f"{ENV_BUS}={base!r}: expected tcp://HOST:PORT")
        return f"tcp://{host}:{int(port) + _PORT_OFFSETS[name]}"
    if base.startswith("ipc://"):
        return f"{base}-{name}"
    raise ValueError(f"{ENV_BUS}={base!r}: expected tcp://HOST:PORT or ipc:///path/prefix")


class CurveConfig(BaseModel):
    """CurveZMQ keys. ``authorized_dir`` holds the public ``*.key`` files of allowed clients.

    Servers (the proxy, or a publisher that binds) need ``server_secret``; clients need
    ``server_public`` (the server's ``*.key``) and their own ``client_secret``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    server_secret: Path | None = None
    server_public: Path | None = None
    client_secret: Path | None = None
    authorized_dir: Path | None = None


class BusConfig(BaseModel):
    """Where the bus lives and how sockets behave.

    The default layout is an XSUB/XPUB proxy (``prescient bus``): publishers connect to
    ``pub_endpoint``, subscribers to ``sub_endpoint``. Loopback-only by default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    pub_endpoint: str = Field(default_factory=lambda: default_endpoint("pub"))
    sub_endpoint: str = Field(default_factory=lambda: default_endpoint("sub"))
    map_endpoint: str = Field(default_factory=lambda: default_endpoint("map"))
    conditional_endpoint: str = Field(default_factory=lambda: default_endpoint("conditional"))
    sndhwm: int = Field(1000, ge=1)
    rcvhwm: int = Field(1000, ge=1)
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    poll_ms: int = Field(100, ge=1, le=5000)
    curve: CurveConfig | None = None

    @field_validator("pub_endpoint", "sub_endpoint", "map_endpoint", "conditional_endpoint")
    @classmethod
    def _known_transport(cls, v: str) -> str:
        if not v.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"endpoint {v!r} must start with tcp://, ipc:// or inproc://")
        return v


def format_validation_error(err: ValidationError) -> str:
    """One line naming each bad field and why (for StartupError messages)."""
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'config'}: {e['msg']}" for e in err.errors())
