"""``prescient fleet``: many logs or seeds at once as Ray tasks (the ``fleet`` extra).

One Ray task per log (``fleet replay``) or per seed (``fleet generate``), each running exactly
the single-machine code path (:func:`prescient.service.offline.replay_log`,
:func:`prescient.models.sim_data.generate`), so a fleet result is byte-identical to the
single-machine command. Ray is imported only when a command runs (:mod:`.ray_session`).
"""
