"""The look-ahead: the committed tracks plus every frame still waiting in the reorder window.

The committed table applies frames in capture order once they are older than the newest capture
minus the reorder window (50 ms), so a frame that arrives late (another modality's longer
latency) still goes in its place, and the committed tracks do not depend on arrival order. Waiting
costs latency, though: published from the committed table, a prediction holds no measurement
younger than the window.

The look-ahead removes that wait without giving up the order. It is a second table that holds
``committed + the buffered frames, applied in capture order``; the output at a tick comes from it.
Between ticks it is kept up to date as frames arrive:

  * a frame that sorts after everything the look-ahead has applied is simply applied (the usual
    case: the fastest sensor's newest frame);
  * a frame that sorts before (an out-of-sequence measurement: the LiDAR sweep of a capture time
    whose LWIR frame is already in) makes it start over: copy the committed table, re-apply the
    buffered frames in order. This is the re-filtering of the out-of-sequence-measurement
    literature, with the committed table as the state history; it is exact, so the look-ahead
    never depends on arrival order either, only on which frames have arrived.

Invariant (tested): after :meth:`LookAhead.sync`, the table equals a copy of the committed table
with the buffered frames applied in :func:`~prescient.service.tracker.ingest.batch_key` order,
bit for bit, whatever the arrival order and whenever ``sync`` was called before. Both tables see
the same sequence of batches, the committed one only a prefix of it, so applying more frames to the
committed table does not break the invariant; a tick does (the committed table's status changes
and history happen at another point of the sequence), so a tick invalidates the look-ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prescient.bus import messages as m
from prescient.service.tracker.ingest import HeapEntry, Ingest, batch_key, batches_of
from prescient.service.tracker.table import TrackTable

ApplyFn = Callable[[TrackTable, list[Any]], bool]


def newest_header(old: m.Header | None, frames: list[Any]) -> m.Header | None:
    """The newer of ``old`` and the frames' headers, by (capture stamp, publish time)."""
    newest = max((f.header for f in frames), key=lambda h: (h.stamp_ns, h.sent_mono_ns))
    if old is None or (newest.stamp_ns, newest.sent_mono_ns) > (old.stamp_ns, old.sent_mono_ns):
        return newest
    return old


class LookAhead:
    """A table that holds the committed tracks plus the frames still in the reorder heap.

    Args:
        capacity: slots (the committed table's capacity).
        apply: applies one batch to a table, False if it could not (no ego pose); the tracker's
            own update, with counters that do not count (the committed table counts every frame
            once).
    """

    def __init__(self, capacity: int, apply: ApplyFn) -> None:
        self.table = TrackTable(capacity)
        self._apply = apply
        self._valid = False
        self._key: tuple[int, int] | None = None  # batch_key of the last batch applied
        self._generation = -1  # the ingest generation the table was built against
        # Ego clock when a batch was applied ahead of the newest ego state (the pose was
        # extrapolated); a newer ego state then makes the look-ahead start over.
        self._extrapolated_at: int | None = None
        self.newest_applied: m.Header | None = None
        self.rebuilds = 0
        self.appended = 0

    def invalidate(self) -> None:
        """The committed table changed other than by applying frames (a tick): start over next time."""
        self._valid = False

    def sync(
        self,
        committed: TrackTable,
        committed_newest: m.Header | None,
        ingest: Ingest,
        until_ns: int | None = None,
    ) -> TrackTable:
        """Bring the look-ahead up to date with every buffered frame (captured <= ``until_ns``).

        Args:
            committed: the committed table; committed_newest: its newest applied frame header.
            ingest: the tracker's input stage (its heap and the frames pushed since last time).
            until_ns: leave out frames captured after this (a tick's time); None: all.

        Returns:
            The look-ahead table.
        """
        fresh, ingest.fresh = ingest.fresh, []
        fresh.sort()
        if until_ns is not None:
            held = [e for e in fresh if e[0] > until_ns]
            fresh = [e for e in fresh if e[0] <= until_ns]
            if held:  # they are not applied now and would be forgotten: next sync starts over
                ingest.fresh.extend(held)
        if self._must_rebuild(fresh, ingest, until_ns):
            self._rebuild(committed, committed_newest, ingest, until_ns)
        elif fresh:
            self._append(fresh, ingest)
            self.appended += 1
        return self.table

    def _must_rebuild(self, fresh: list[HeapEntry], ingest: Ingest, until_ns: int | None) -> bool:
        if not self._valid or self._generation != ingest.generation:
            return True
        if self._extrapolated_at is not None and ingest.ego.newest_ns != self._extrapolated_at:
            return True
        t = self.table.filter_ns
        if until_ns is not None and t is not None and t > until_ns:
            return True  # frames after the tick are in: the tick's output cannot go back in time
        if fresh and self._key is not None and batch_key(fresh[0][3]) <= self._key:
            return True  # out of sequence (or another corner of the last batch)
        return False

    def _rebuild(
        self,
        committed: TrackTable,
        committed_newest: m.Header | None,
        ingest: Ingest,
        until_ns: int | None,
    ) -> None:
        self.table.copy_from(committed)
        self._key, self._extrapolated_at = None, None
        self.newest_applied = committed_newest
        self._generation = ingest.generation
        self._valid = True
        self.rebuilds += 1
        self._append(ingest.pending(until_ns), ingest)

    def _append(self, entries: list[HeapEntry], ingest: Ingest) -> None:
        for batch in batches_of(entries):
            stamp = batch[0].header.stamp_ns
            ego_ns = ingest.ego.newest_ns
            if ego_ns is None or stamp > ego_ns:
                self._extrapolated_at = ego_ns if ego_ns is not None else -1
            if self._apply(self.table, batch):
                self.newest_applied = newest_header(self.newest_applied, batch)
            self._key = batch_key(batch[0])
