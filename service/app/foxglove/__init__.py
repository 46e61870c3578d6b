"""Foxglove output: prescient messages as ``foxglove.*`` scenes, in MCAP files and on a live WebSocket.

Modules: :mod:`.scene` (pure conversion to ``foxglove.messages``), :mod:`.stream` (bus topics ->
Foxglove topics), :mod:`.export` (``prescient export-scene``), :mod:`.server` and :mod:`.cli`
(``prescient view``, ``prescient up --foxglove``). Needs the ``foxglove`` extra (``foxglove-sdk``).
"""
