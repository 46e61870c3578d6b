"""After association: per-track bookkeeping and fusion of what the filter does not estimate.

For each associated (track, measurement) pair: hit counts and the liveness clocks; box size (EMA
of LiDAR boxes) and the heading of CV tracks (circular EMA of box headings, mod pi); attribute
scores (EMA of camera attribute bits); class probabilities (Bayesian, symmetric confusion, see
:func:`~prescient.service.tracker.fusion_kernels.fuse_class_kernel`), switching the motion model when the
most probable class changes it.
"""

from __future__ import annotations

import numpy as np

from prescient.bus import messages as m
from prescient.service.tracker import fusion_kernels as fk
from prescient.service.tracker.admission import TrackerStats
from prescient.service.tracker.config import TrackerConfig
from prescient.service.tracker.layout import MODEL_CV
from prescient.service.tracker.measurements import Meas
from prescient.service.tracker.motion import Motion, model_of_class
from prescient.service.tracker.table import ATTR_BITS, TrackTable


def class_likelihood(class_id: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """(M, C) float64 likelihood of each observation under each true class (symmetric confusion).

    Args:
        class_id: (M,) observed class; conf: (M,) float64 confidence of each observation.
    """
    C = m.NUM_CLASSES
    L = np.repeat(((1.0 - conf) / (C - 1))[:, None], C, axis=1)
    L[np.arange(class_id.shape[0]), class_id] = conf
    return L


class Fusion:
    """Bookkeeping of associated pairs (see the module docstring).

    Args:
        config: EMA weights, class weights per modality, liveness rules.
        motion: converts a track's state when its class changes the motion model.
        stats: event counters (shared with the other stages).
    """

    def __init__(self, config: TrackerConfig, motion: Motion, stats: TrackerStats) -> None:
        self.config = config
        self.stats = stats
        self._motion = motion

    def bookkeep(self, table: TrackTable, ti: np.ndarray, dj: np.ndarray, meas: Meas, t: int) -> None:
        """Apply the pairs (slot ``ti[k]``, measurement row ``dj[k]``) of a batch captured at ``t``."""
        c = self.config
        position = meas.modality == m.Modality.LIDAR or (
            meas.modality == m.Modality.RADAR and c.radar_keeps_alive
        )
        fk.hits_kernel(
            table.last_update_ns, table.hits, table.last_position_ns, table.last_pos_xy_m,
            table.position_hits, table.x, ti, t, position,
        )  # fmt: skip
        if meas.size_lwh_m is not None:
            fk.fuse_boxes_kernel(
                table.size_lwh_m, table.yaw_aux_rad, table.model, ti, meas.size_lwh_m, meas.z[:, 2], dj,
                c.size_alpha, MODEL_CV,
            )  # fmt: skip
        if meas.attributes is not None:
            fk.attr_ema_kernel(table.attr_score, ti, meas.attributes, dj, ATTR_BITS, c.attribute_alpha)
        w = c.class_weight[meas.modality]
        if meas.class_id is not None and meas.class_conf is not None and w > 0:
            self._fuse_class(table, ti, meas.class_id[dj], meas.class_conf[dj], float(w))

    def _fuse_class(
        self, table: TrackTable, ti: np.ndarray, class_id: np.ndarray, class_conf: np.ndarray, weight: float
    ) -> None:
        """Fuse the observed classes ``class_id`` (P,) with confidences ``class_conf`` (P,) into
        tracks ``ti`` (P,)."""
        best = np.empty(ti.size, np.int32)
        fk.fuse_class_kernel(
            table.class_logp,
            ti,
            class_id,
            class_conf,
            weight,
            self.config.class_logp_floor,
            best,
        )
        changed = best != table.class_id[ti]
        if changed.any():
            # One track may appear twice (two corners): re-check against the class set just now.
            for slot, cls in zip(ti[changed], best[changed]):
                if cls != table.class_id[slot]:
                    self.set_class(table, int(slot), int(cls))

    def set_class(self, table: TrackTable, slot: int, cls: int) -> None:
        """Change a track's class and noise levels; convert its state if the motion model changes."""
        table.class_id[slot] = cls
        self._motion.set_noise(table, slot, cls)
        new_model = model_of_class(cls)
        if new_model == table.model[slot]:
            return
        self._motion.switch_model(table, slot, new_model)
        self.stats.count("model_switches")
