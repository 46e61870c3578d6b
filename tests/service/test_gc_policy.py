"""The live service's collector policy: start-up heap frozen while live, every collection timed."""

from __future__ import annotations

import gc
import weakref

from prescient.service.gc_policy import GcPauses, frozen_startup_heap


class _Node:
    """A container that can sit in a reference cycle and be watched through a weak reference."""

    def __init__(self) -> None:
        self.other: object = None


def _cycle() -> weakref.ref:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_start_up_objects_are_frozen_while_live_and_released_after() -> None:
    """Frozen objects are outside every generation a collection walks (``gc.get_objects()``)."""
    before = _cycle()  # garbage from before going live: the first collect frees it
    with frozen_startup_heap() as frozen:
        assert before() is None
        assert frozen > 0 and 0 < gc.get_freeze_count() <= frozen  # frozen ones may still die
        kept = _Node()  # made while live
        walked = gc.get_objects()
        assert not any(o is _Node for o in walked)  # the class, made at import: frozen
        assert any(o is kept for o in walked)
    assert gc.get_freeze_count() == 0  # the process's collector is left as it was found
    assert any(o is _Node for o in gc.get_objects())


def test_cycles_made_while_live_are_still_collected() -> None:
    with frozen_startup_heap():
        ref = _cycle()
        gc.collect()
        assert ref() is None


def test_pauses_count_each_generation_and_uninstall() -> None:
    pauses = GcPauses()
    with pauses.install():
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    full = pauses.count[2]
    assert pauses.count[0] >= 1 and full >= 2  # an automatic one may have joined in
    assert pauses.max_ns[2] > 0 and pauses.total_ns[2] >= pauses.max_ns[2]
    gc.collect(2)  # after the block: no longer counted
    assert pauses.count[2] == full
    assert f"gen2 {full} (max" in pauses.summary()
