"""Agent behaviour: numba kernels that advance the agent state tables one physics step.

:func:`step.step_agents_kernel` is the entry point (wrapped by
:class:`prescient.sim_sensors.simulation.Simulation`); the other modules each hold one concern:

* :mod:`.following`: car following (IDM towards the nearest leader or obstacle ahead).
* :mod:`.right_of_way`: traffic lights at stop lines, giving way at roundabout entries.
* :mod:`.lane_change`: discretionary lane changes behind a slower leader.
* :mod:`.lane_motion`: moving along the lane graph, lane transitions, brake lights, indicators.
* :mod:`.pedestrians`: waiting at and using crossings, jaywalking.
* :mod:`.animals`: wandering near a home point.
* :mod:`.intents`: the codes per-agent decisions hand back to the step loop.

State layout: :mod:`prescient.sim_sensors.layout`. Every kernel mutates the tables in place and draws from
the simulation's RNG stream in a fixed order, so a step is a pure function of its inputs.

Numba's cache (``cache=True``) checks only the file of the kernel it loads, not the files of the
kernels compiled into it: after editing a callee in another module (e.g. :mod:`prescient.sim_sensors.lanes`),
delete ``sim_sensors/**/__pycache__`` or the callers keep the old code.
"""

from prescient.sim_sensors.behaviour.step import StepEnv, step_agents_kernel

__all__ = ["StepEnv", "step_agents_kernel"]
