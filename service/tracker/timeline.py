"""The track table with its recent past: frames applied at once, re-filtered when one comes late.

Sensors deliver with their own latencies (LWIR 40 ms, camera and radar 50 ms, LiDAR 60 ms), so
the frames of one capture time arrive out of order. The tracker applies every frame as soon as
it can and keeps a short state history, the out-of-sequence-measurement technique of tracking
literature:

  * **Events** are batches (the frames of one modality and one capture time: the corners) and
    ticks (status changes, deletions and history at a 100 ms mark). They apply in key order:
    ``(capture stamp, modality rank)`` for a batch, ``(tick time, TICK_RANK)`` for a tick, so a
    tick comes after every frame captured at its time.
  * The first event of each capture time, and each tick, keeps a **checkpoint**: a copy of the
    table before it (a late frame goes back to its capture time's first event at the most, and
    per time rather than per batch copies the table a third as often in a simulator run).
  * A frame that sorts after everything applied is simply applied (the usual case). One that
    sorts before (the LiDAR sweep of a capture time whose LWIR frame is in; another corner of a
    batch already applied) rolls the table back to the checkpoint before the first event it
    precedes and applies those events again with it in place. The same holds for a tick that
    comes after frames captured later than it.
  * Frames newer than the newest ego state wait (their pose would be extrapolated) until an ego
    state covers them, a tick needs them, or they leave the reorder window. An event that was
    applied with an extrapolated pose is applied again once a newer ego state arrives.
  * Events captured before the reorder horizon (the newest capture minus the window) are
    dropped with their checkpoints; a frame older than the horizon is ``late``.

Invariant (tested): the table equals the retained events applied in key order from the oldest
checkpoint with the current ego states, so it depends on which frames and ego states have
arrived, not on their order or on when :meth:`Timeline.sync` ran. Each frame is applied once in
order; only out-of-sequence frames cost a re-filter of the events after them.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from prescient.bus import messages as m
from prescient.service.tracker.admission import TrackerStats
from prescient.service.tracker.ego import EgoBuffer
from prescient.service.tracker.ingest import APPLY_ORDER, HeapEntry, Ingest, batch_key, batches_of
from prescient.service.tracker.table import TrackTable

TICK_RANK = len(APPLY_ORDER)  # a tick sorts after every modality of its capture time
SPARE_CHECKPOINTS = 8  # spare tables kept for new checkpoints (~0.5 MB each at 512 slots)
Key = tuple[int, int]
Out = TypeVar("Out")
# (table, frames, counters): apply one batch, counting into ``counters``; False when it could not
# be applied (no ego pose).
ApplyBatch = Callable[[TrackTable, list[Any], TrackerStats], bool]
ReplayTick = Callable[[TrackTable, int, TrackerStats], None]  # a tick's steps applied again


def newest_header(old: m.Header | None, frames: list[Any]) -> m.Header | None:
    """The newer of ``old`` and the frames' headers, by (capture stamp, publish time)."""
    newest = max((f.header for f in frames), key=lambda h: (h.stamp_ns, h.sent_mono_ns))
    if old is None or (newest.stamp_ns, newest.sent_mono_ns) > (old.stamp_ns, old.sent_mono_ns):
        return newest
    return old


@dataclass
class Event:
    """One applied event and, for the first of its capture time and for a tick, the table before it."""

    key: Key
    frames: list[Any] | None  # None: a tick at key[0]
    before: TrackTable | None
    newest_before: m.Header | None
    ego_ns: int | None  # newest ego stamp when applied
    extrapolated: bool  # a batch captured after that ego stamp (its pose was extrapolated)
    counts: TrackerStats  # what its last application counted (kept until it is final)


class Timeline:
    """The current track table, the events applied to it, and their checkpoints.

    Args:
        capacity: slots of the table and of each checkpoint.
        apply_batch: applies one batch to a table (see :data:`ApplyBatch`).
        replay_tick: applies a tick's steps again (no output, scratch counters).
        ego: the tracker's ego pose buffer (which frames are covered; when to re-apply).
        final_counts: takes the counters of each event when it is final (dropped at the
            horizon): an event applied several times is counted once, as last applied, so the
            counters do not depend on when syncs ran.
    """

    def __init__(
        self,
        capacity: int,
        apply_batch: ApplyBatch,
        replay_tick: ReplayTick,
        ego: EgoBuffer,
        final_counts: Callable[[TrackerStats], None],
    ) -> None:
        self.table = TrackTable(capacity)
        self.events: list[Event] = []
        self.newest_applied: m.Header | None = None
        self._apply_batch = apply_batch
        self._replay_tick = replay_tick
        self._ego = ego
        self._final_counts = final_counts
        self._held: list[HeapEntry] = []  # frames waiting for an ego state, sorted
        self._pool: list[TrackTable] = []  # spare checkpoints
        self._generation = 0
        self.appends = 0  # syncs that only appended events
        self.rollbacks = 0  # re-filters from a checkpoint

    # ------------------------------------------------------------------------------------------
    def sync(self, ingest: Ingest, until_ns: int | None = None) -> None:
        """Apply the frames that arrived (and those held) that can be applied now.

        A frame is applied when an ego state covers its capture time, or when it was captured at
        or before ``until_ns`` (a tick's time, or a frame leaving the reorder window: applied
        with an extrapolated pose). Others wait. Events applied with an extrapolated pose are
        applied again first when a newer ego state has arrived.
        """
        fresh, ingest.fresh = ingest.fresh, []
        if ingest.generation != self._generation:
            # The heap lost frames other than by the window (dropped before the first ego state),
            # or the fresh list overflowed: wait for exactly the queued frames not applied yet.
            self._generation = ingest.generation
            applied = {id(f) for e in self.events if e.frames is not None for f in e.frames}
            self._held = [e for e in ingest.pending() if id(e[3]) not in applied]
            fresh = []
        entries = sorted(self._held + fresh) if fresh else self._held
        limits = [t for t in (self._ego.newest_ns, until_ns) if t is not None]
        cut = bisect.bisect_right([e[0] for e in entries], max(limits)) if limits else 0
        ready, self._held = entries[:cut], entries[cut:]
        batches = batches_of(ready)
        start = self._stale_index()
        if batches:
            k = bisect.bisect_left([e.key for e in self.events], batch_key(batches[0][0]))
            start = k if start is None else min(start, k)
        if start is None:
            return
        if start == len(self.events):
            self.appends += 1
        else:
            self.rollbacks += 1
        self._reapply(self._rewind(start), batches)

    def tick(self, now_ns: int, on_tick: Callable[[TrackTable, TrackerStats], Out]) -> Out:
        """Insert the tick at ``now_ns``: ``on_tick`` applies its steps and builds the output on
        the table as of the tick (frames captured later, if any are in, are applied again after)."""
        key = (now_ns, TICK_RANK)
        i = bisect.bisect_right([e.key for e in self.events], key)
        tail = self._rewind(i)
        out = on_tick(self.table, self._push_event(key, None).counts)
        self._reapply(tail, [])
        return out

    def prune(self, horizon_ns: int) -> None:
        """Drop events captured before ``horizon_ns`` (no frame can come before them any more)."""
        j = 0
        while j < len(self.events) and self.events[j].key[0] < horizon_ns:
            j += 1
        for e in self.events[:j]:
            if e.before is not None:
                self._release(e.before)
            self._final_counts(e.counts)
        del self.events[:j]

    # ------------------------------------------------------------------------------------------
    def _stale_index(self) -> int | None:
        """First event applied with an extrapolated pose that a newer ego state now covers."""
        ego_ns = self._ego.newest_ns
        for i, e in enumerate(self.events):
            if e.extrapolated and e.ego_ns != ego_ns:
                return i
        return None

    def _rewind(self, i: int) -> list[Event]:
        """Roll the table back to before event ``i`` (or the nearest checkpoint before it); return
        the events taken off (to re-apply)."""
        while i < len(self.events) and self.events[i].before is None:
            i -= 1  # the first event of each capture time has a checkpoint
        tail = self.events[i:]
        if tail:
            del self.events[i:]
            base = tail[0].before
            if base is None:  # the loop above stops at a checkpoint; the first event always has one
                raise RuntimeError("timeline: no checkpoint to roll back to")
            self.table.copy_live_from(base)
            self.newest_applied = tail[0].newest_before
            for e in tail:
                if e.before is not None:
                    self._release(e.before)
        return tail

    def _release(self, table: TrackTable) -> None:
        """A checkpoint no longer needed: kept as a spare, up to :data:`SPARE_CHECKPOINTS` (a
        burst of events, e.g. a flood of frames, does not hold its memory afterwards)."""
        if len(self._pool) < SPARE_CHECKPOINTS:
            self._pool.append(table)

    def _reapply(self, tail: list[Event], batches: list[list[Any]]) -> None:
        """Apply old events and new batches merged in key order; a new batch with the key of an
        old one (another corner) joins it, frames in topic order as :func:`batches_of` gives."""
        items: dict[Key, list[Any] | None] = {e.key: e.frames for e in tail}
        for batch in batches:
            key = batch_key(batch[0])
            old = items.get(key)
            items[key] = batch if old is None else sorted(old + batch, key=lambda f: f.header.topic)
        for key in sorted(items):
            frames = items[key]
            counts = self._push_event(key, frames).counts
            if frames is None:
                self._replay_tick(self.table, key[0], counts)
            elif self._apply_batch(self.table, frames, counts):
                self.newest_applied = newest_header(self.newest_applied, frames)

    def _push_event(self, key: Key, frames: list[Any] | None) -> Event:
        """Record an event about to be applied, with a checkpoint if it is the first of its
        capture time or a tick."""
        before = None
        if frames is None or not self.events or self.events[-1].key[0] != key[0]:
            before = self._pool.pop() if self._pool else TrackTable(self.table.capacity)
            before.copy_live_from(self.table)
        ego_ns = self._ego.newest_ns
        extrapolated = frames is not None and (ego_ns is None or key[0] > ego_ns)
        event = Event(key, frames, before, self.newest_applied, ego_ns, extrapolated, TrackerStats())
        self.events.append(event)
        return event
