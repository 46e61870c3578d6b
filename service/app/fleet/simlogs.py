"""Simulator logs written offline (no bus, no wall clock): inputs for fleet runs, tests and ``bench fleet``."""

from __future__ import annotations

from pathlib import Path

from prescient.bus.logfile import LogWriter


def write_sim_log(
    path: Path, seed: int, seconds: float = 4.0, agents: int = 6, scenario: str = "intersection"
) -> Path:
    """Record ``seconds`` of simulation (map, 16 sensors, ego, ground truth) to the MCAP ``path``.

    Deterministic per (scenario, seed, agents, seconds); replayed through the tracker like a live recording.
    """
    from prescient.sim_sensors.config import SimConfig
    from prescient.sim_sensors.simulation import Simulation

    sim = Simulation(SimConfig(scenario=scenario, seed=seed, n_agents=agents))
    with LogWriter(path) as w:
        w.write(sim.map)
        for msgs in sim.run(seconds):
            for msg in msgs:
                w.write(msg)
    return path
