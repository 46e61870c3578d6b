"""How old the data in a prediction is: the newest input applied to its tracks, and when it came.

The pipeline asks the tracker which frame is the newest one applied (frames wait in the reorder
window, so it is older than the newest one received) and reports that frame's capture stamp and
publish time with the prediction. A replayed log keeps the publish times of the run that recorded
it; for those inputs the receive time stands in, remembered here for the few ticks until the
tracker applies them.
"""

from __future__ import annotations

from collections import OrderedDict

from prescient.bus import messages as m

MAX_REMEMBERED = 1024  # a few ticks of all 16 sensors
MAX_TRANSIT_NS = 10_000_000_000  # a publish time more than 10 s before receipt is another run's


class SourceTimes:
    """Publish times of inputs, corrected for replayed logs."""

    def __init__(self) -> None:
        self._recv: OrderedDict[tuple[str, int, int], int] = OrderedDict()

    def note(self, header: m.Header, recv_mono_ns: int) -> None:
        """An admitted input received at ``recv_mono_ns`` (0 offline: nothing to correct)."""
        if recv_mono_ns and not 0 < recv_mono_ns - header.sent_mono_ns < MAX_TRANSIT_NS:
            self._recv[(header.topic, header.seq, header.stamp_ns)] = recv_mono_ns
            if len(self._recv) > MAX_REMEMBERED:
                self._recv.popitem(last=False)

    def source(self, applied: m.Header | None, newest_stamp_ns: int | None) -> tuple[int, int, int]:
        """(capture stamp, publish time, held ns) of the newest applied input ``applied``.

        ``held`` is how much newer (sensor clock) the newest received input, ``newest_stamp_ns``,
        was: the reorder window's share of the data age. Zeros before anything was applied.
        """
        if applied is None:
            return 0, 0, 0
        sent = self._recv.get((applied.topic, applied.seq, applied.stamp_ns), applied.sent_mono_ns)
        held = max(0, (newest_stamp_ns or applied.stamp_ns) - applied.stamp_ns)
        return applied.stamp_ns, sent, held

    def clear(self) -> None:
        self._recv.clear()
