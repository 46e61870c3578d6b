"""Map changes in the live service: a map on the bus is a hint, the map server decides.

A replayed log (or a simulator) serves its map on the map endpoint, which one process binds, and
also publishes it on the bus. The service takes a ``map.vector`` on the bus whose ``map_id``
differs from its own only as a hint: it asks the map server for that ``map_id`` and switches
(:meth:`~prescient.service.pipeline.Pipeline.set_map`) to the server's answer alone. So a map
forged on the bus cannot move the service to another place; it costs one short request at most
every ``min_interval_s`` and is counted as ``map:unconfirmed``.
"""

from __future__ import annotations

import logging

from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.bus.errors import BusError
from prescient.bus.reqrep import Requester
from prescient.service.pipeline import Pipeline

log = logging.getLogger(__name__)


class MapWatch:
    """Confirms map hints with the map server and switches the pipeline's map.

    Args:
        cfg: bus configuration (``map_endpoint``).
        min_interval_s: the shortest time between two confirmation requests.
        timeout_ms: how long one confirmation may wait (the loop waits with it).
    """

    def __init__(self, cfg: BusConfig, min_interval_s: float = 5.0, timeout_ms: int = 200) -> None:
        self._cfg = cfg
        self._req: Requester | None = None
        self._interval_ns = int(min_interval_s * 1e9)
        self._timeout_ms = timeout_ms
        self._next_ns = 0
        self._pending: str | None = None
        self.unconfirmed = 0  # hints the map server did not confirm

    def hint(self, msg: object, current_map_id: str) -> None:
        """A message from the ``map.vector`` topic; only a new ``map_id`` is remembered."""
        if isinstance(msg, m.VectorMap) and msg.map_id != current_map_id:
            log.debug("map %r on the bus (serving %r): asking the map server", msg.map_id, current_map_id)
            self._pending = msg.map_id

    def apply(self, pipe: Pipeline, now_mono_ns: int) -> bool:
        """Ask the map server for the pending ``map_id``; switch when it serves it. True if switched."""
        wanted = self._pending
        if wanted is None or wanted == pipe.map_id or now_mono_ns < self._next_ns:
            return False
        self._pending, self._next_ns = None, now_mono_ns + self._interval_ns
        served = self._ask(wanted)
        if served is None:
            self.unconfirmed += 1
            log.warning(
                "map %r seen on the bus but not served by %s: ignored", wanted, self._cfg.map_endpoint
            )
            return False
        return pipe.set_map(served)

    def _ask(self, map_id: str) -> m.VectorMap | None:
        if self._req is None:
            self._req = Requester(self._cfg, self._cfg.map_endpoint)
        request = m.MapRequest(header=m.Header(topic=m.TOPIC_MAP_REQUEST), map_id=map_id)
        try:
            reply = self._req.request(request, timeout_ms=self._timeout_ms)
        except BusError:  # timeout, error reply (another map_id served), malformed reply
            return None
        return reply if isinstance(reply, m.VectorMap) and reply.map_id == map_id else None

    def close(self) -> None:
        if self._req is not None:
            self._req.close()
