"""Serve a :class:`~prescient.bus.messages.VectorMap` on the map request/reply endpoint from a thread.

Used by whatever owns the map in a run: the simulator, or the log replayer (the map of a recorded
or imported log), so the service can always ask ``map.request`` at startup.
"""

from __future__ import annotations

import logging
import threading
import time

from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.bus.errors import StartupError, TransportError
from prescient.bus.reqrep import Replier
from prescient.bus.transport import RxStats

log = logging.getLogger(__name__)


class MapServer:
    """Answers every :class:`~prescient.bus.messages.MapRequest` with ``vector_map`` until ``stop()``."""

    def __init__(self, cfg: BusConfig, vector_map: m.VectorMap) -> None:
        self._map = vector_map
        try:
            self._rep = Replier(cfg, cfg.map_endpoint)
        except TransportError as e:
            raise StartupError(f"map server: {e}") from e
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="map-server", daemon=True)
        self.served = 0
        self.loop_errors = 0  # unexpected exceptions survived by the serving loop

    def _handle(self, req: object) -> m.VectorMap:
        if not isinstance(req, m.MapRequest):
            raise ValueError(f"expected MapRequest, got {type(req).__name__}")
        if req.map_id not in ("", self._map.map_id):
            raise ValueError(f"unknown map_id {req.map_id!r}; serving {self._map.map_id!r}")
        self.served += 1
        return self._map

    @property
    def stats(self) -> RxStats:
        """Refused requests by ``topic:reason`` (bad framing, decode errors, wrong type, ...)."""
        return self._rep.stats

    def _run(self) -> None:
        last_log_s = -1e9
        while not self._stop.is_set():
            try:
                self._rep.serve_once(self._handle, timeout_ms=100)
            except Exception:  # serve_once refuses bad requests itself; this is for our own bugs
                # The map server must outlive anything: a dead thread would leave every later
                # service start without a map.
                self.loop_errors += 1
                if time.monotonic() - last_log_s >= 1.0:
                    last_log_s = time.monotonic()
                    log.exception("map server: unexpected error (%d so far); serving on", self.loop_errors)
                self._stop.wait(0.01)  # no hot loop if the error repeats

    def start(self) -> MapServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._rep.close()

    def __enter__(self) -> MapServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
