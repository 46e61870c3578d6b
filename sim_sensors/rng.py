"""Deterministic random numbers inside numba kernels: a splitmix64 stream per owner.

The stream state is a (1,) uint64 array owned by the caller (one per sensor modality; one per
agent row of a simulation, see :func:`agent_state`), so two simulations in one process never share
a generator, as they would with numba's global ``np.random``. The order of draws is part of the
simulator's output: a refactor that draws in another order changes every later number.

Agents draw from their own streams, not from one shared stream in row order: then an agent's
draws do not depend on how many draws the agents before it made, and a change to one agent (the
ego's plan in :mod:`prescient.sim_sensors.counterfactual`) does not reshuffle the random choices
of agents it never meets.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_TWO_PI = 2.0 * math.pi


@njit(cache=True, nogil=True)
def rng_u64_kernel(st: np.ndarray) -> np.uint64:
    """Next 64-bit output of the splitmix64 stream in ``st`` (1,) uint64 (updated in place)."""
    st[0] += np.uint64(0x9E3779B97F4A7C15)
    z = st[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def rng_uniform_kernel(st: np.ndarray) -> float:
    """Uniform float in [0, 1)."""
    return float(rng_u64_kernel(st) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def rng_normal_kernel(st: np.ndarray) -> float:
    """Standard normal (Box-Muller)."""
    u1 = max(rng_uniform_kernel(st), 1e-300)
    u2 = rng_uniform_kernel(st)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


@njit(cache=True, nogil=True)
def rng_poisson_kernel(st: np.ndarray, lam: float) -> int:
    """Poisson variate (Knuth; fine for the small means used here)."""
    if lam <= 0.0:
        return 0
    limit = math.exp(-lam)
    k = 0
    p = rng_uniform_kernel(st)
    while p > limit and k < 1000:
        k += 1
        p *= rng_uniform_kernel(st)
    return k


def seed_state(seed: int, stream: int | None = None) -> np.ndarray:
    """(1,) uint64 initial state: the simulation's own stream, or sensor stream ``stream``."""
    if stream is None:
        return np.array([(seed * 0x9E3779B97F4A7C15 + 7) % (1 << 64)], np.uint64)
    return np.array([(seed * 0x9E3779B97F4A7C15 + stream * 0xD1B54A32D192ED03 + 1) % (1 << 64)], np.uint64)


def agent_state(seed: int, agent_id: int) -> np.uint64:
    """Initial splitmix64 state of agent ``agent_id``'s own stream in the simulation of ``seed``.

    A function of (seed, id) only, so the agent draws the same numbers whatever happens to the
    others (ids are never reused within a simulation).
    """
    return np.uint64((seed * 0x9E3779B97F4A7C15 + (agent_id + 1) * 0xBF58476D1CE4E5B9 + 3) % (1 << 64))
