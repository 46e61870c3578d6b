"""Reliability benchmark parts: hostile frame generators, bus observers, the stack under test.

``attacks`` holds pure functions (frames in, frames out: unit-tested); ``observe``, ``senders``
and ``stackproc`` own the sockets and processes; ``prescient.benchmarks.bench_reliability`` runs them.
"""
