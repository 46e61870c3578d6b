"""The onboard runtime (tracker, raster, predictor, pipeline, node, planner stub) and the apps."""

from prescient.bus import jit_cache as _jit_cache

_jit_cache.configure()  # before any numba kernel module is imported (see prescient.bus.jit_cache)
