"""Motion models of the tracker on the track table: predict, update, initial states, model
switches, extrapolated output.

Constant velocity (``MODEL_CV``) for pedestrians, animals and unknown; constant turn rate and
acceleration (``MODEL_CTRA``, which reduces to CTRV) for cars, trucks, buses and cyclists. State
layouts are in :mod:`prescient.service.tracker.layout`; the numba kernels in
:mod:`prescient.service.tracker.motion_kernels`. Everything here works in the world frame, times in
sensor-clock ns, ``dt`` in seconds.
"""

from __future__ import annotations

import math

import numpy as np

from prescient.bus import messages as m
from prescient.service.tracker import motion_kernels as mk
from prescient.service.tracker.config import TrackerConfig
from prescient.service.tracker.layout import MODEL_CTRA, MODEL_CV, STATE_DIM
from prescient.service.tracker.measurements import Meas
from prescient.service.tracker.table import NS_PER_S, TrackTable

_CTRA_CLASSES = frozenset({m.AgentClass.CAR, m.AgentClass.TRUCK, m.AgentClass.BUS, m.AgentClass.CYCLIST})


def model_of_class(class_id: int) -> int:
    """Motion model of a class: CTRA for vehicles and cyclists, CV for everything else."""
    return MODEL_CTRA if class_id in _CTRA_CLASSES else MODEL_CV


def speed_of(table: TrackTable, idx: np.ndarray) -> np.ndarray:
    """(n,) float64 speed of slots ``idx``, m/s (``|v|`` for CTRA, ``|(vx, vy)|`` for CV)."""
    ctra = table.model[idx] == MODEL_CTRA
    x = table.x[idx]
    return np.where(ctra, np.abs(x[:, 3]), np.hypot(x[:, 2], x[:, 3]))


def speed_var_of(table: TrackTable, idx: np.ndarray, speed: np.ndarray) -> np.ndarray:
    """(n,) float64 variance of the speed of slots ``idx`` along their direction of motion, m^2/s^2.

    Args:
        speed: (n,) their speeds (:func:`speed_of`).
    """
    ctra = table.model[idx] == MODEL_CTRA
    x, P = table.x[idx], table.P[idx]
    u = x[:, 2:4] / np.maximum(speed, 1e-9)[:, None]  # direction of motion (CV)
    return np.where(ctra, P[:, 3, 3], np.einsum("ni,nij,nj->n", u, P[:, 2:4, 2:4], u))


class Motion:
    """Per-class process noise and the motion-model operations on a :class:`TrackTable`.

    Args:
        config: per-class noise levels and initial uncertainties.
    """

    def __init__(self, config: TrackerConfig) -> None:
        self._sigma_a_cls = np.asarray(config.sigma_accel_mps2, np.float64)
        self._sigma_w_cls = np.asarray(config.sigma_yaw_accel_radps2, np.float64)
        self._sigma_j_cls = np.asarray(config.sigma_jerk_mps3, np.float64)
        self._init_v_cls = np.asarray(config.init_sigma_speed_mps, np.float64)
        self._init_sigma_accel = config.init_sigma_accel_mps2

    def set_noise(self, table: TrackTable, slots: np.ndarray | int, cls: np.ndarray | int) -> None:
        """Process noise of ``slots`` from their class ``cls`` (same shape)."""
        table.sigma_a[slots] = self._sigma_a_cls[cls]
        table.sigma_w[slots] = self._sigma_w_cls[cls]
        table.sigma_j[slots] = self._sigma_j_cls[cls]

    def predict_to(self, table: TrackTable, t_ns: int) -> None:
        """Predict every live slot to ``t_ns`` and move ``table.filter_ns`` there (never back)."""
        if table.filter_ns is None:
            table.filter_ns = t_ns
            return
        if t_ns <= table.filter_ns:
            return
        dt = (t_ns - table.filter_ns) / NS_PER_S
        idx = table.live()
        if idx.size:
            mk.predict_kernel(
                table.x, table.P, table.model, table.sigma_a, table.sigma_w, table.sigma_j, idx, dt
            )
        table.filter_ns = t_ns

    @staticmethod
    def update(table: TrackTable, ti: np.ndarray, meas: Meas, dj: np.ndarray) -> np.ndarray:
        """EKF update of slot ``ti[k]`` with measurement row ``dj[k]``, in order.

        Returns:
            (n,) bool, False where the update was skipped (singular or non-finite).
        """
        return mk.update_kernel(
            table.x, table.P, table.model, ti, meas.kind, meas.sensors, meas.z, meas.R, dj
        )

    def initial_states(
        self, models: np.ndarray, cls: np.ndarray, z: np.ndarray, R: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """States of new tracks born from LiDAR boxes.

        Args:
            models: (n,) int8 ``MODEL_*``; cls: (n,) int32 class.
            z: (n, 3) float64 ``[x_m, y_m, yaw_rad]`` world; R: (n, 3) float64 their variances.

        Returns:
            x (n, 6) and P (n, 6, 6) float64: position (and CTRA yaw) from the box, speed unknown
            (the class's initial speed std), yaw rate and acceleration near zero.
        """
        n = models.size
        sv2 = self._init_v_cls[cls] ** 2
        x = np.zeros((n, STATE_DIM))
        P = np.zeros((n, STATE_DIM, STATE_DIM))
        x[:, 0:2] = z[:, 0:2]
        P[:, 0, 0] = R[:, 0]
        P[:, 1, 1] = R[:, 1]
        ctra = models == MODEL_CTRA
        x[ctra, 2] = z[ctra, 2]
        P[ctra, 2, 2] = R[ctra, 2]
        P[ctra, 3, 3] = sv2[ctra]
        P[ctra, 4, 4] = 0.3**2
        P[ctra, 5, 5] = self._init_sigma_accel**2
        P[~ctra, 2, 2] = sv2[~ctra]
        P[~ctra, 3, 3] = sv2[~ctra]
        P[~ctra, 4, 4] = 1.0
        P[~ctra, 5, 5] = 1.0
        return x, P

    def switch_model(self, table: TrackTable, slot: int, new_model: int) -> None:
        """Convert one slot's state and covariance to ``new_model`` (first order, through the
        Jacobian of the conversion); a CV track's heading comes from its velocity when it moves
        faster than 0.5 m/s, else from ``yaw_aux_rad``."""
        x, P = table.x[slot], table.P[slot]
        sd = STATE_DIM
        J = np.zeros((sd, sd))
        J[0, 0] = J[1, 1] = 1.0
        if new_model == MODEL_CTRA:  # [x, y, vx, vy] -> [x, y, yaw, v, w, a]
            vx, vy = x[2], x[3]
            v = math.hypot(vx, vy)
            yaw = math.atan2(vy, vx) if v > 0.5 else table.yaw_aux_rad[slot]
            vs = max(v, 0.5)
            J[2, 2], J[2, 3] = -vy / (vs * vs), vx / (vs * vs)
            J[3, 2], J[3, 3] = math.cos(yaw), math.sin(yaw)
            newx = np.array([x[0], x[1], yaw, v, 0.0, 0.0])
            newP = J @ P @ J.T
            newP[4, 4] = 0.3**2
            newP[5, 5] = self._init_sigma_accel**2
        else:  # [x, y, yaw, v, w, a] -> [x, y, vx, vy, 0, 0]
            yaw, v = x[2], x[3]
            J[2, 2], J[2, 3] = -v * math.sin(yaw), math.cos(yaw)
            J[3, 2], J[3, 3] = v * math.cos(yaw), math.sin(yaw)
            newx = np.array([x[0], x[1], v * math.cos(yaw), v * math.sin(yaw), 0.0, 0.0])
            newP = J @ P @ J.T
            newP[4:, :] = 0.0
            newP[:, 4:] = 0.0
            newP[4, 4] = newP[5, 5] = 1.0
            table.yaw_aux_rad[slot] = yaw
        newP[2, 2] += 1e-4
        newP[3, 3] += 1e-4
        table.x[slot], table.P[slot] = newx, 0.5 * (newP + newP.T)
        table.model[slot] = new_model

    @staticmethod
    def flip_reversed(table: TrackTable) -> int:
        """Turn CTRA tracks driving backwards faster than 1 m/s around; returns how many.

        Such a track is almost always a heading flipped by pi (box ambiguity at birth): yaw gains
        pi, speed and longitudinal acceleration change sign (rows/columns 3 and 5 of P too).
        """
        idx = table.live()
        back = idx[(table.model[idx] == MODEL_CTRA) & (table.x[idx, 3] < -1.0)]
        if back.size:
            table.x[back, 2] = np.remainder(table.x[back, 2] + 2 * math.pi, 2 * math.pi) - math.pi
            for d in (3, 5):
                table.x[back, d] *= -1.0
                table.P[back, d, :] *= -1.0
                table.P[back, :, d] *= -1.0
        return int(back.size)

    @staticmethod
    def extrapolate(
        table: TrackTable, idx: np.ndarray, now_ns: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Output quantities of slots ``idx`` extrapolated to ``now_ns``, on copies.

        The filter itself stays at ``table.filter_ns`` (frames still inside the reorder window
        can be applied later). A CV track's heading is its direction of motion above 1 m/s (kept
        in ``yaw_aux_rad``), else the last such heading or box heading.

        Returns:
            pos (n, 2) m, vel (n, 2) m/s, yaw (n,) rad, cov (n, 4, 4) of ``[x, y, vx, vy]``; all
            float64, world frame; non-finite where the filter diverged.
        """
        n = idx.size
        pos = np.empty((n, 2))
        vel = np.empty((n, 2))
        yaw = np.empty(n)
        cov = np.empty((n, 4, 4))
        if n == 0:
            return pos, vel, yaw, cov
        x, P = table.x[idx], table.P[idx]
        local = np.arange(n, dtype=np.int64)
        model = table.model[idx]
        if table.filter_ns is not None and now_ns > table.filter_ns:
            dt = (now_ns - table.filter_ns) / NS_PER_S
            mk.predict_kernel(
                x, P, model, table.sigma_a[idx], table.sigma_w[idx], table.sigma_j[idx], local, dt
            )
        mk.output_kernel(x, P, model, local, pos, vel, yaw, cov)
        cv = np.isnan(yaw)
        speed = np.hypot(vel[:, 0], vel[:, 1])
        moving = cv & (speed > 1.0)
        table.yaw_aux_rad[idx[moving]] = np.arctan2(vel[moving, 1], vel[moving, 0])
        yaw[cv] = table.yaw_aux_rad[idx[cv]]
        return pos, vel, yaw, cov
