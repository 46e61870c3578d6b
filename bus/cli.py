"""``prescient bus`` (run the XSUB/XPUB proxy) and ``prescient bus keys`` (CurveZMQ certificates)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from pydantic import ValidationError

from bus.config import BusConfig, CurveConfig, format_validation_error
from bus.errors import StartupError, TransportError
from bus.proxy import Proxy

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
    p.add_argument(
        "--curve-dir",
        type=Path,
        default=None,
        help="directory made by `prescient bus keys` to enable CurveZMQ",
    )
    p.add_argument("--curve-client", default="node", help="client certificate name inside --curve-dir")


def bus_config_from_args(args: argparse.Namespace, server: bool = False) -> BusConfig:
    """Build a validated BusConfig from CLI args; a bad value is a StartupError."""
    curve = None
    if getattr(args, "curve_dir", None) is not None:
        d = Path(args.curve_dir)
        curve = (
            CurveConfig(server_secret=d / "server.key_secret", authorized_dir=d / "authorized")
            if server
            else CurveConfig(
                server_public=d / "server.key", client_secret=d / f"{args.curve_client}.key_secret"
            )
        )
        for path in (curve.server_secret, curve.server_public, curve.client_secret, curve.authorized_dir):
            if path is not None and not path.exists():
                raise StartupError(
                    f"CurveZMQ file missing: {path} (create keys with `prescient bus keys {d}`)"
                )
    given = {
        k: v
        for k, v in (
            ("pub_endpoint", getattr(args, "pub_endpoint", None)),
            ("sub_endpoint", getattr(args, "sub_endpoint", None)),
        )
        if v
    }
    try:
        return BusConfig(curve=curve, **given)
    except ValueError as e:  # pydantic's ValidationError is a ValueError; so is a bad $PRESCIENT_BUS
        if isinstance(e, ValidationError):
            raise StartupError(format_validation_error(e)) from e
        raise StartupError(str(e)) from e
        raise StartupError(format_validation_error(e)) from e


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


def _make_keys(args: argparse.Namespace) -> int:
    import zmq.auth

    d = Path(args.dir)
    (d / "authorized").mkdir(parents=True, exist_ok=True)
    zmq.auth.create_certificates(str(d), "server")
    for name in args.clients:
        public, _ = zmq.auth.create_certificates(str(d), name)
        (d / "authorized" / f"{name}.key").write_bytes(Path(public).read_bytes())
    print(
        f"wrote server and {len(args.clients)} client certificates to {d}; authorised: {', '.join(args.clients)}"
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
    k.add_argument("--clients", nargs="+", default=["node"], help="client names to create and authorise")
    k.set_defaults(func=_make_keys)
