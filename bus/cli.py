"""``prescient bus`` (run the XSUB/XPUB proxy) and ``prescient bus keys`` (CurveZMQ certificates).

Also what every command shares, here in the lowest layer so that each may import it: the bus
options, argument checks (``positive_float``, ``output_file``, ...; argparse ``type=``) and a
progress bar for long jobs (:func:`progress_bar`).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    p.add_argument("--duration", type=positive_float, default=None, help="stop after this many seconds")
    p.set_defaults(func=_run_proxy)
    bus_sub = p.add_subparsers(dest="bus_command", metavar="SUBCOMMAND")
    k = bus_sub.add_parser("keys", help="create CurveZMQ certificates (server + authorised clients)")
    k.add_argument("dir", type=output_dir, help="folder for the keys (created if missing)")
    k.add_argument(
        "--clients",
        nargs="+",
        default=[DEFAULT_CURVE_CLIENT],
        help=f"client names to create and authorise (processes use {DEFAULT_CURVE_CLIENT!r} unless --curve-client)",
    )
    k.add_argument("--force", action="store_true", help="replace existing keys")
    k.set_defaults(func=_make_keys)


# ----------------------------------------------------------------------------------------------
# Argument checks every command shares (``type=`` of argparse). A bad value is one argparse
# error line and exit 2 before the command does any work. Inputs that do not exist are the
# command's own failure (exit 1, :func:`require_file`), as the README documents for logs.
# ----------------------------------------------------------------------------------------------
def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not {'an integer' if kind is int else 'a number'}: {text!r}"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    """A number > 0 (durations, rates, budgets)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A number >= 0 (offsets into a log, waits)."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, threads, steps)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, agent counts, indices)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _writable_folder(folder: Path, create: bool) -> None:
    """``folder`` is (or, with ``create``, its nearest existing parent is) a writable folder."""
    if create:
        while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
            folder = folder.parent
    if not folder.exists():
        raise argparse.ArgumentTypeError(f"folder {folder} does not exist")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {folder} is not writable")


def _output(text: str, create: bool) -> Path:
    if not text:
        raise argparse.ArgumentTypeError("empty path")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name in it")
    _writable_folder(path.parent, create)
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path} is not writable")
    return path


def output_file(text: str) -> Path:
    """A file to write: not a folder, in an existing writable folder."""
    return _output(text, create=False)


def output_path(text: str) -> Path:
    """A file to write whose missing folders the command creates: not a folder, writable."""
    return _output(text, create=True)


def output_dir(text: str) -> Path:
    """A folder to write into: an existing writable folder, or one the command can create."""
    if not text:
        raise argparse.ArgumentTypeError("empty path")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} exists and is not a folder")
    _writable_folder(path, create=True)
    return path


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path if it is a readable file, else a :class:`StartupError` naming ``what``."""
    p = Path(path)
    if not p.exists():
        raise StartupError(f"{what} not found: {p}")
    if p.is_dir():
        raise StartupError(f"{what} {p} is a folder, not a file")
    if not os.access(p, os.R_OK):
        raise StartupError(f"{what} {p} is not readable")
    return p


def log_totals(path: Path) -> tuple[dict[str, int], float] | None:
    """Messages per topic and the time span (s) from the log's MCAP summary, without reading the data.

    Only for a progress bar's total: None when the log has no summary (unfinished, damaged); the
    command then reads the log, and reports its damage, as always.
    """
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    try:
        with open(path, "rb") as f:
            summary = make_reader(f).get_summary()
    except (McapError, OSError, ValueError, EOFError, IndexError, KeyError, struct.error):
        return None
    st = summary.statistics if summary is not None else None
    if summary is None or st is None:
        return None
    counts = {
        summary.channels[c].topic: n for c, n in st.channel_message_counts.items() if c in summary.channels
    }
    return counts, max(0, st.message_end_time - st.message_start_time) / 1e9


# ----------------------------------------------------------------------------------------------
# Progress of long jobs: a rich bar on stderr, only when stderr is a terminal.
# ----------------------------------------------------------------------------------------------
class ProgressBar:
    """One task of a ``rich.progress.Progress``, or nothing (stderr is not a terminal)."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: float = 1.0) -> None:
        """Add ``n`` to the completed amount."""
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, completed: float | None = None, **fields: Any) -> None:
        """Set the completed amount, and optionally ``total`` or ``description``."""
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, **fields)

    def follow(self, amount: Callable[[], float], stop: threading.Event, period_s: float = 0.25) -> None:
        """Set the completed amount from ``amount()`` every ``period_s`` until ``stop`` (a thread)."""
        if self._progress is None:
            return

        def _poll() -> None:
            while not stop.wait(period_s):
                self.update(amount())

        threading.Thread(target=_poll, name="progress", daemon=True).start()


@contextmanager
def progress_bar(description: str, total: float | None = None, unit: str = "") -> Iterator[ProgressBar]:
    """A transient progress bar on stderr while the block runs (``total`` None: elapsed time only).

    Nothing is written unless stderr is a terminal, so piped or captured output stays exactly
    as without it. Log lines written meanwhile go above the bar.
    """
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield ProgressBar()
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
    if total is not None:
        columns += [
            TextColumn(f"{{task.completed:.0f}}/{{task.total:.0f}} {unit}".rstrip()),
            TimeRemainingColumn(),
        ]
    columns.append(TimeElapsedColumn())
    handlers = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    streams = {h: h.stream for h in handlers if h.stream is sys.stderr}
    with Progress(*columns, console=console, transient=True, redirect_stdout=False) as progress:
        for h in streams:
            h.setStream(sys.stderr)  # rich's proxy while the bar is shown: log lines go above it
        try:
            yield ProgressBar(progress, progress.add_task(description, total=total))
        finally:
            for h, stream in streams.items():
                h.setStream(stream)
