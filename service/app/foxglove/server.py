"""A Foxglove WebSocket server (foxglove-sdk) playing a log's scene (``prescient view``).

Channels are those of :mod:`.stream`, on a private :class:`foxglove.Context`; SceneUpdate and
FrameTransform go out protobuf-encoded, the JSON topics as JSON. Times as in :mod:`.export`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import foxglove
from foxglove import channels as fc

from prescient.bus.replayer import iter_messages
from prescient.bus.ros2.export import time_anchor
from prescient.service.app.foxglove.stream import (
    JSON_SCHEMAS,
    SOURCE_TOPICS,
    TOPIC_RASTER,
    TOPIC_SCENE,
    TOPIC_TF,
    FoxgloveMessage,
    SceneStream,
)

# The WebSocket subprotocol foxglove-sdk 0.30 accepts (older servers spoke ``foxglove.websocket.v1``).
SUBPROTOCOL = "foxglove.sdk.v1"


class LiveChannels:
    """The Foxglove channels of one context; :meth:`log` routes a :class:`FoxgloveMessage`."""

    def __init__(self, context: foxglove.Context) -> None:
        self.context = context  # the channels close when their context is dropped
        self.by_topic: dict[str, Any] = {
            TOPIC_SCENE: fc.SceneUpdateChannel(TOPIC_SCENE, context=context),
            TOPIC_TF: fc.FrameTransformChannel(TOPIC_TF, context=context),
            TOPIC_RASTER: fc.RawImageChannel(TOPIC_RASTER, context=context),
        }
        for topic, schema in JSON_SCHEMAS.items():
            self.by_topic[topic] = foxglove.Channel(topic, schema=dict(schema), context=context)

    def log(self, fx: FoxgloveMessage) -> None:
        self.by_topic[fx.topic].log(fx.payload, log_time=fx.log_time_ns)


def start(port: int, host: str = "127.0.0.1") -> tuple[Any, LiveChannels]:
    """Start the server (``port`` 0: any free port; read it from ``server.port``) and its channels."""
    ctx = foxglove.Context()
    channels = LiveChannels(ctx)
    server = foxglove.start_server(name="prescient", host=host, port=port, context=ctx)
    return server, channels


def play_log(
    src: Path,
    channels: LiveChannels,
    *,
    rate: float = 1.0,
    loop: bool = False,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Send the scene of ``src`` at ``rate`` x real time (log_time spacing); return messages sent.

    ``rate`` <= 0 sends as fast as possible. ``loop`` starts again at the end until ``stop`` is set.
    """
    anchor = time_anchor(src)
    stream = SceneStream(anchor.stamp_offset_ns, anchor.log_offset_ns)
    stop = stop or threading.Event()
    sent = 0
    while not stop.is_set():
        t0_log: int | None = None
        t0_wall = time.monotonic()
        for lm in iter_messages(src, topics=SOURCE_TOPICS):
            if stop.is_set():
                break
            t0_log = lm.log_time_ns if t0_log is None else t0_log
            if rate > 0:
                due = t0_wall + (lm.log_time_ns - t0_log) / 1e9 / rate
                sleep(max(0.0, due - time.monotonic()))
            for fx in stream.convert(lm.topic, lm.msg, lm.log_time_ns):
                channels.log(fx)
                sent += 1
        if not loop:
            break
    return sent


def serve_bus(cfg: Any, channels: LiveChannels, stop: threading.Event) -> int:
    """Forward the live bus to ``channels`` until ``stop``; return messages sent.

    Times: the wall clock at receipt is the log time; a message's stamp (sensor clock) is mapped
    to UNIX time with the offset seen on the first message (``time.time_ns() - stamp``).
    """
    from prescient.bus.transport import Subscriber

    sub = Subscriber(cfg, list(SOURCE_TOPICS))
    stream: SceneStream | None = None
    sent = 0
    try:
        while not stop.is_set():
            got = sub.recv_raw(timeout_ms=100)
            if got is None:
                continue
            topic = got[0]
            msg = sub.accept(*got)  # None: rejected (the subscriber counts it by reason)
            if msg is None:
                continue
            now_ns = time.time_ns()
            if stream is None:
                stream = SceneStream(now_ns - int(msg.header.stamp_ns), 0)
            for fx in stream.convert(topic, msg, now_ns):
                channels.log(fx)
                sent += 1
    finally:
        sub.close()
    return sent
