"""Ray for the fleet commands: import it (or say which extra to install), check the address, start, stop.

Local by default (``ray.init`` with this machine's cores, or ``num_cpus``); an existing cluster
with ``--address HOST:PORT`` (or ``$RAY_ADDRESS``). The address is probed with a plain TCP
connect first, so an unreachable one is one clear line within seconds instead of Ray's long
retry loop. :func:`ray_session` always ends with ``ray.shutdown()``: a local instance's
processes end with it, and a cluster's driver leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prescient.bus.errors import MissingExtraError, StartupError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`MissingExtraError` naming the ``fleet`` extra (exit 2)."""
    try:
        import ray
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "ray":
            raise
        raise MissingExtraError("ray", "fleet") from e
    return ray


def resolve_address(address: str | None) -> str | None:
    """``--address``, else ``$RAY_ADDRESS``, else None (a local instance)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`StartupError` unless ``HOST:PORT`` (or ``ray://HOST:PORT``) accepts a TCP connection.

    ``auto`` and ``local`` are Ray's own words and are passed through unchecked.
    """
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise StartupError(f"--address {address!r} is not HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise StartupError(f"Ray cluster at {address} is unreachable ({e.strerror or e})") from e


@contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[Any]:
    """``ray`` initialised on ``address`` (None: a local instance with ``num_cpus``), shut down at exit.

    Raises:
        StartupError: the cluster is unreachable or refuses the connection.
        MissingExtraError: Ray is not installed.
    """
    ray = import_ray()
    if address is not None:
        check_reachable(address)
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address is None:
        kwargs["num_cpus"] = num_cpus
    else:
        kwargs["address"] = address
    try:
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise StartupError(
                f"cannot start Ray at {address or 'this machine'}: {str(e).splitlines()[0]}"
            ) from e
        yield ray
    finally:
        ray.shutdown()
