"""``prescient bus`` (run the XSUB/XPUB proxy) and ``prescient bus keys`` (CurveZMQ certificates)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from pydantic import ValidationError

from prescient.bus.config import (
    DEFAULT_CURVE_CLIENT,
    ENV_CURVE_CLIENT,
    ENV_CURVE_DIR,
    BusConfig,
    CurveConfig,
    format_validation_error,
)
from prescient.bus.errors import StartupError, TransportError
from prescient.bus.proxy import Proxy

log = logging.getLogger(__name__)


def add_bus_args(p: argparse.ArgumentParser) -> None:
    """Endpoint and CurveZMQ options shared by every command that talks to the bus."""
    p.add_argument(
        "--pub-endpoint",
        default=None,
        help="where publishers connect (proxy XSUB); default from $PRESCIENT_BUS or tcp://127.0.0.1:5550",
    )
    p.add_argument(
        "--sub-endpoint", default=None, help="where subscribers connect (proxy XPUB); default port +1"
    )
    add_curve_args(p)


def add_curve_args(p: argparse.ArgumentParser) -> None:
    """``--curve-dir`` / ``--curve-client``: CurveZMQ on every socket of the process."""
    p.add_argument(
        "--curve-dir",
        type=Path,
        default=None,
        help="directory made by `prescient bus keys` to enable CurveZMQ on every socket "
        f"(bus, map and conditional endpoints); default ${ENV_CURVE_DIR}",
    )
    p.add_argument(
        "--curve-client",
        default=None,
        help=f"client certificate name inside --curve-dir (default ${ENV_CURVE_CLIENT} or {DEFAULT_CURVE_CLIENT})",
    )


def bus_config_from_args(args: argparse.Namespace, server: bool = False) -> BusConfig:
    """Build a validated BusConfig from CLI args; a bad value is a StartupError.

    ``--curve-dir`` configures every socket: clients of the proxy, the map and conditional
    servers (all with the ``server`` certificate), and requesters. Without it,
    ``$PRESCIENT_CURVE_DIR`` does (``BusConfig``'s default). ``server``: the proxy (no client
    socket, so no client certificate is needed).
    """
    given: dict[str, object] = {
        k: v
        for k, v in (
            ("pub_endpoint", getattr(args, "pub_endpoint", None)),
            ("sub_endpoint", getattr(args, "sub_endpoint", None)),
        )
        if v
    }
    try:
        curve_dir = getattr(args, "curve_dir", None)
        if curve_dir is not None:
            client = getattr(args, "curve_client", None) or DEFAULT_CURVE_CLIENT
            given["curve"] = CurveConfig.from_dir(Path(curve_dir), client, server_only=server)
        return BusConfig(**given)
    except ValueError as e:  # pydantic's ValidationError is a ValueError; so is a bad $PRESCIENT_BUS
        if isinstance(e, ValidationError):
            raise StartupError(format_validation_error(e)) from e
        raise StartupError(str(e)) from e


def wait_for_signal(stop: threading.Event, duration_s: float | None = None) -> None:
    """Block until SIGINT/SIGTERM (or ``duration_s``), setting ``stop``."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait(timeout=duration_s)
    stop.set()


def _run_proxy(args: argparse.Namespace) -> int:
    cfg = bus_config_from_args(args, server=True)
    try:
        proxy = Proxy(cfg).start()
    except TransportError as e:
        raise StartupError(str(e)) from e
    log.info(
        "bus proxy: publishers -> %s, subscribers -> %s%s",
        cfg.pub_endpoint,
        cfg.sub_endpoint,
        " (CurveZMQ)" if cfg.curve else "",
    )
    wait_for_signal(threading.Event(), args.duration)
    proxy.stop()
    log.info("bus proxy stopped")
    return 0


def write_keys(d: Path, clients: list[str], force: bool = False) -> list[Path]:
    """Create the server certificate and one per client in ``d``; authorise the clients.

    Secret files are created with mode 0600 (never readable by others, not even briefly) and
    ``d`` is made 0700. Files are written in pyzmq's certificate format
    (``zmq.auth.load_certificate`` reads them).

    Returns:
        Every file written.

    Raises:
        StartupError: a key file exists already and ``force`` is False, or a name is not a
            plain file name.
    """
    import zmq

    names = ["server", *dict.fromkeys(c for c in clients if c != "server")]
    for name in names:
        if not name or Path(name).name != name or name.startswith("."):
            raise StartupError(f"bad certificate name {name!r}: expected a plain file name")
    auth = d / "authorized"
    targets = [d / f"{n}.key{x}" for n in names for x in ("", "_secret")]
    targets += [auth / f"{n}.key" for n in names[1:]]
    existing = [p for p in targets if p.exists() or p.is_symlink()]
    if existing and not force:
        raise StartupError(
            f"keys exist already ({', '.join(map(str, existing))}); pass --force to replace them"
        )
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    auth.mkdir(exist_ok=True)
    os.chmod(auth, 0o700)
    for p in existing:
        p.unlink()
    written: list[Path] = []
    for name in names:
        public, secret = zmq.curve_keypair()
        _write_cert(d / f"{name}.key", public, None)
        _write_cert(d / f"{name}.key_secret", public, secret)
        written += [d / f"{name}.key", d / f"{name}.key_secret"]
        if name != "server":
            _write_cert(auth / f"{name}.key", public, None)
            written.append(auth / f"{name}.key")
    return written


def _write_cert(path: Path, public: bytes, secret: bytes | None) -> None:
    """One certificate file; O_EXCL so that nothing is written through an existing file or link."""
    kind = "Secret" if secret is not None else "Public"
    lines = [
        f"#   ZeroMQ CURVE **{kind}** Certificate (prescient bus keys)",
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS." if secret is not None else "",
        "",
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret is not None else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _make_keys(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    write_keys(d, list(args.clients), force=args.force)
    print(
        f"wrote server and {len(args.clients)} client certificates to {d} (secret files mode 0600); "
        f"authorised: {', '.join(args.clients)}. Use it with --curve-dir {d} (or ${ENV_CURVE_DIR}) on every command."
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bus", help="run the message bus (XSUB/XPUB proxy)")
    add_bus_args(p)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=_run_proxy)
    bus_sub = p.add_subparsers(dest="bus_command", metavar="SUBCOMMAND")
    k = bus_sub.add_parser("keys", help="create CurveZMQ certificates (server + authorised clients)")
    k.add_argument("dir", type=Path)
    k.add_argument(
        "--clients",
        nargs="+",
        default=[DEFAULT_CURVE_CLIENT],
        help=f"client names to create and authorise (processes use {DEFAULT_CURVE_CLIENT!r} unless --curve-client)",
    )
    k.add_argument("--force", action="store_true", help="replace existing keys")
    k.set_defaults(func=_make_keys)
