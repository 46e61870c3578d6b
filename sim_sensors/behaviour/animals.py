"""Animals: a random walk that stays within about 10 m of a home point near the sidewalk (numba)."""

from __future__ import annotations

import math

from numba import njit

from prescient.sim_sensors.angles import wrap_kernel
from prescient.sim_sensors.rng import rng_normal_kernel, rng_uniform_kernel


@njit(cache=True, nogil=True)
def wander_kernel(a, dt, rng):
    """Advance animal ``a`` (its float record) by ``dt`` s: pause or trot in bursts, turn home when > 10 m away.

    Args:
        rng: (1,) uint64 RNG state.
    """
    a.timer -= dt
    if a.timer <= 0.0:
        if rng_uniform_kernel(rng) < 0.4:
            a.v = 0.0
            a.timer = 1.0 + 3.0 * rng_uniform_kernel(rng)
        else:
            a.v = a.v0 * (0.5 + rng_uniform_kernel(rng))
            a.timer = 2.0 + 4.0 * rng_uniform_kernel(rng)
            a.yaw = wrap_kernel(a.yaw + 0.8 * rng_normal_kernel(rng))
    hx, hy = a.home_x - a.x, a.home_y - a.y
    if hx * hx + hy * hy > 100.0:
        err = wrap_kernel(math.atan2(hy, hx) - a.yaw)
        a.yaw = wrap_kernel(a.yaw + max(-1.5 * dt, min(1.5 * dt, err)))
    a.yaw = wrap_kernel(a.yaw + 0.3 * math.sqrt(dt) * rng_normal_kernel(rng))
    a.x += a.v * math.cos(a.yaw) * dt
    a.y += a.v * math.sin(a.yaw) * dt
