"""Bus configuration (pydantic at the edge; validated once, then plain values)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prescient.bus.messages import PRED_HORIZON_STEPS

ENV_BUS: Final = "PRESCIENT_BUS"
ENV_CURVE_DIR: Final = "PRESCIENT_CURVE_DIR"  # a `prescient bus keys` directory: CurveZMQ everywhere
ENV_CURVE_CLIENT: Final = "PRESCIENT_CURVE_CLIENT"  # the client certificate's name in it (default "node")
DEFAULT_CURVE_CLIENT: Final = "node"
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

    @classmethod
    def from_dir(
        cls, curve_dir: Path, client: str = DEFAULT_CURVE_CLIENT, server_only: bool = False
    ) -> CurveConfig:
        """Every key of a ``prescient bus keys DIR`` directory, for every socket of one process.

        All servers (the proxy, the map server, the conditional server) share the ``server``
        certificate, so one directory configures both sides of every endpoint: a process binds
        as a CurveZMQ server with ``server.key_secret`` and connects as client ``client``.

        Args:
            curve_dir: the directory (``server.key``, ``server.key_secret``,
                ``<client>.key_secret``, ``authorized/``).
            client: the client certificate this process uses.
            server_only: the proxy, which has no client socket (no client secret needed).

        Raises:
            ValueError: a file is missing (the message says how to create the keys).
        """
        d = Path(curve_dir)
        cfg = cls(
            server_secret=d / "server.key_secret",
            server_public=None if server_only else d / "server.key",
            client_secret=None if server_only else d / f"{client}.key_secret",
            authorized_dir=d / "authorized",
        )
        for path in (cfg.server_secret, cfg.server_public, cfg.client_secret, cfg.authorized_dir):
            if path is not None and not path.exists():
                raise ValueError(f"CurveZMQ file missing: {path} (create keys with `prescient bus keys {d}`)")
        return cfg


def curve_from_env() -> CurveConfig | None:
    """``$PRESCIENT_CURVE_DIR`` (unset or empty: no CurveZMQ), like the endpoints' ``$PRESCIENT_BUS_*``.

    So containers and helper processes (health checks) get the keys without a flag.
    """
    d = os.environ.get(ENV_CURVE_DIR, "").strip()
    if not d:
        return None
    return CurveConfig.from_dir(Path(d), os.environ.get(ENV_CURVE_CLIENT, "").strip() or DEFAULT_CURVE_CLIENT)


class RequestLimitExceeded(ValueError):
    """A request over one of the :class:`RequestLimits` caps; ``limit`` names the field."""

    def __init__(self, limit: str, value: int, cap: int) -> None:
        super().__init__(f"{limit}={cap} exceeded: got {value}")
        self.limit, self.value, self.cap = limit, value, cap


class RequestLimits(BaseModel):
    """Caps on one request to a request/reply endpoint (conditional predictions, map).

    A request over a cap gets an error reply naming the cap (counted as ``over_<field>``) and
    costs the server no model pass. Sizes: B plans of T steps are ``B * T * 8`` bytes on the wire.

    Attributes:
        max_plans: B, candidate plans per conditional request (each is a raster and a model pass).
        max_plan_steps: T of a plan, at most the prediction horizon (``PRED_DT_S`` steps).
        max_request_bytes: a request larger than this is refused before decoding. The socket's
            own MAXMSGSIZE is ``prescient.bus.reqrep.SOCKET_SIZE_FACTOR`` times larger: over *that*,
            libzmq drops the connection without a reply, so the explicit check is the one that
            answers.
        queue_depth: requests accepted and waiting for an answer; one more is answered "busy".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_plans: int = Field(8, ge=1, le=1024)
    max_plan_steps: int = Field(PRED_HORIZON_STEPS, ge=1)
    max_request_bytes: int = Field(256 * 1024, ge=1024)
    queue_depth: int = Field(4, ge=1, le=1024)

    def check_plans(self, shape: tuple[int, ...]) -> None:
        """Raise :class:`RequestLimitExceeded` when plans of ``shape`` (B, T, 2) are over a cap."""
        if shape[0] > self.max_plans:
            raise RequestLimitExceeded("max_plans", int(shape[0]), self.max_plans)
        if len(shape) > 1 and shape[1] > self.max_plan_steps:
            raise RequestLimitExceeded("max_plan_steps", int(shape[1]), self.max_plan_steps)

    def check_bytes(self, n_bytes: int) -> None:
        """Raise :class:`RequestLimitExceeded` when a request of ``n_bytes`` is over the cap."""
        if n_bytes > self.max_request_bytes:
            raise RequestLimitExceeded("max_request_bytes", int(n_bytes), self.max_request_bytes)


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
    curve: CurveConfig | None = Field(default_factory=curve_from_env)
    requests: RequestLimits = Field(default_factory=RequestLimits)

    @field_validator("pub_endpoint", "sub_endpoint", "map_endpoint", "conditional_endpoint")
    @classmethod
    def _known_transport(cls, v: str) -> str:
        if not v.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"endpoint {v!r} must start with tcp://, ipc:// or inproc://")
        return v


def format_validation_error(err: ValidationError) -> str:
    """One line naming each bad field and why (for StartupError messages)."""
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'config'}: {e['msg']}" for e in err.errors())
