"""Class confusion shared by the detector models (numba)."""

from __future__ import annotations

from numba import njit

from prescient.sim_sensors.layout import CLS_ANIMAL, CLS_BUS, CLS_CAR, CLS_CYCLIST, CLS_PED, CLS_TRUCK
from prescient.sim_sensors.rng import rng_uniform_kernel


@njit(cache=True, nogil=True)
def confuse_class_kernel(cls, rng):
    """A plausible wrong class for ``cls`` (CLS_*): cars for trucks, pedestrians for cyclists."""
    u = rng_uniform_kernel(rng)
    if cls == CLS_CAR:
        return CLS_TRUCK if u < 0.7 else CLS_BUS
    if cls == CLS_TRUCK:
        return CLS_BUS if u < 0.5 else CLS_CAR
    if cls == CLS_BUS:
        return CLS_TRUCK
    if cls == CLS_PED:
        return CLS_CYCLIST if u < 0.7 else CLS_ANIMAL
    if cls == CLS_CYCLIST:
        return CLS_PED
    return CLS_PED
