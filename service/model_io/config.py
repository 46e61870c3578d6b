"""Model configuration shared by training (torch) and the onnxruntime predictor (no torch).

Shapes legend: B batch (scenes), N agents (padded to ``n_max``), H history steps, T future steps,
K modes, P plan points, C/H_px/W_px raster.

Raster geometry: ``raster_from_ego`` is a 2x3 affine map from ego-frame metres ``(x fwd, y left)``
to *continuous* raster pixel coordinates ``(col, row)``, where pixel ``i`` covers ``[i, i + 1)``.
The default puts the ego at the raster centre with +x pointing up (row decreasing) and +y
pointing left (col decreasing), at ``resolution_m_per_px``. Pass the rasterizer's own transform
when it differs; it is stored in the manifest so the runtime uses the geometry the net was
trained with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from prescient.bus.messages import NUM_CLASSES, PRED_DT_S, PRED_HORIZON_STEPS, TRACK_HISTORY_STEPS

HIST_FEATURES = 7  # per step, agent frame: x_m, y_m, vx_mps, vy_mps, cos_dyaw, sin_dyaw, valid
STATE_BASE_FEATURES = 8  # ego frame: x_m, y_m, cos_yaw, sin_yaw, vx_mps, vy_mps, length_m, width_m
STATE_FEATURES = STATE_BASE_FEATURES + NUM_CLASSES  # + class one-hot
EGO_FEATURES = 5  # ego frame: vx_mps, vy_mps, length_m, width_m, plan_valid

INPUT_NAMES = ("raster", "agent_hist", "agent_state", "agent_valid", "ego_state", "ego_plan")
OUTPUT_NAMES = ("traj", "probs", "scale")
# Tensors whose axis 1 is the agent axis; an export may make it symbolic (AGENT_AXIS).
AGENT_AXIS_NAMES = ("agent_hist", "agent_state", "agent_valid", "traj", "probs", "scale")
AGENT_AXIS = "N"
DECODERS = ("direct", "basis")  # see ModelConfig.decoder


def default_raster_from_ego(height_px: int, width_px: int, resolution_m_per_px: float) -> tuple:
    """Default 2x3 ``raster_from_ego``: ego at the centre, +x up, +y left.

    Returns:
        ((a, b, c), (d, e, f)) with ``col = a*x + b*y + c`` and ``row = d*x + e*y + f``.
    """
    inv = 1.0 / resolution_m_per_px
    return ((0.0, -inv, width_px / 2.0), (-inv, 0.0, height_px / 2.0))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and interface of :class:`prescient.models.net.TrajectoryNet`.

    Attributes:
        in_channels: raster channels C.
        raster_hw: raster (height_px, width_px).
        resolution_m_per_px: raster resolution.
        raster_from_ego: 2x3 affine, ego metres -> continuous (col, row); None = default.
        n_max: fixed maximum number of agents (padded, with a validity mask).
        hist_steps: H, history steps (oldest first, ending at the current state).
        future_steps: T, predicted steps.
        dt_s: step of history and future, seconds.
        num_modes: K.
        plan_points: P, ego plan points fed to the ego node (ego frame).
        stem_channels / stage_channels: CNN widths (3x3 stride-2 stem, then one stride-2 stage
            of basic residual blocks each).
        d_model: token width; num_heads / num_layers: interaction attention.
        raster_spec_version: version of the raster channel layout the net was trained on.
        channel_names: names of the raster channels (for the manifest).
        decoder: ``"direct"`` (T free positions and scales per mode, the original head) or
            ``"basis"`` (bounded agent-frame accelerations on knots every ``basis_knot_s``,
            integrated twice from the agent's current velocity; smooth by construction, see
            :func:`prescient.models.net.accel_basis`). Changes the head only, not the interface.
        basis_knot_s: knot spacing of the ``"basis"`` acceleration profile, seconds.
        max_accel_mps2: bound on the acceleration norm of the ``"basis"`` decoder; it bounds
            every second difference of its positions by ``max_accel_mps2 * dt_s**2`` metres.
        basis_velocity_step: the ``"basis"`` decoder may also change each mode's velocity at
            t=0 by up to 3 m/s (a jump). In simulation it absorbs the tracker's velocity error,
            but it starts accurately tracked vehicles off their true velocity (measured on
            Argoverse 2: 0.4 m/s on average). False: every mode starts at the agent's current
            velocity and changes it only through the first knot's acceleration (physical). The
            head's size is the same either way, so a checkpoint of one fine-tunes into the other.
        plan_attention: each agent also cross-attends to the P plan points as tokens with
            features relative to that agent (in its frame); the ego node is kept either way.
        mode_scorer: each mode's logit also gets a correction from a small network that sees
            that mode's decoded path: points of it, and the raster features under it at 2, 4, 6
            and 8 s (:class:`prescient.models.net_scorer.ModeScorer`). The base head's logit
            comes from the agent's token alone, blind to where its own modes go. Its last layer
            starts at zero, so a checkpoint without it loads into one with it unchanged.
    """

    in_channels: int = 60
    raster_hw: tuple[int, int] = (256, 256)
    resolution_m_per_px: float = 0.5
    raster_from_ego: tuple | None = None
    n_max: int = 128
    hist_steps: int = TRACK_HISTORY_STEPS
    future_steps: int = PRED_HORIZON_STEPS
    dt_s: float = PRED_DT_S
    num_modes: int = 6
    plan_points: int = 16
    stem_channels: int = 32
    stage_channels: tuple[int, ...] = (64, 96, 128)
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    raster_spec_version: str = "unknown"
    channel_names: tuple[str, ...] = field(default=())
    # Defaults reproduce the original architecture, so old manifests and checkpoints load as-is.
    decoder: str = "direct"
    basis_knot_s: float = 0.5
    max_accel_mps2: float = 8.0
    basis_velocity_step: bool = True
    plan_attention: bool = False
    mode_scorer: bool = False

    def __post_init__(self) -> None:
        errors = []
        if self.in_channels < 1:
            errors.append(f"in_channels must be >= 1, got {self.in_channels}")
        if len(self.raster_hw) != 2 or min(self.raster_hw) < 16:
            errors.append(f"raster_hw must be (H, W) with both >= 16, got {self.raster_hw}")
        if self.n_max < 1 or self.hist_steps < 2 or self.future_steps < 1 or self.num_modes < 1:
            errors.append("n_max, future_steps, num_modes must be >= 1 and hist_steps >= 2")
        if self.d_model % self.num_heads:
            errors.append(f"d_model {self.d_model} not divisible by num_heads {self.num_heads}")
        if self.channel_names and len(self.channel_names) != self.in_channels:
            errors.append(f"{len(self.channel_names)} channel_names for {self.in_channels} channels")
        if self.decoder not in DECODERS:
            errors.append(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.basis_knot_s <= 0 or self.max_accel_mps2 <= 0:
            errors.append(
                f"basis_knot_s and max_accel_mps2 must be > 0, got {self.basis_knot_s}, {self.max_accel_mps2}"
            )
        if errors:
            raise ValueError("invalid ModelConfig: " + "; ".join(errors))
        raster_from_ego = self.raster_from_ego
        if raster_from_ego is None:
            h, w = self.raster_hw
            raster_from_ego = default_raster_from_ego(h, w, self.resolution_m_per_px)
        object.__setattr__(self, "raster_hw", tuple(int(v) for v in self.raster_hw))
        object.__setattr__(
            self, "raster_from_ego", tuple(tuple(float(v) for v in r) for r in raster_from_ego)
        )
        object.__setattr__(self, "stage_channels", tuple(int(v) for v in self.stage_channels))
        object.__setattr__(self, "channel_names", tuple(str(v) for v in self.channel_names))
        object.__setattr__(self, "plan_attention", bool(self.plan_attention))
        object.__setattr__(self, "basis_velocity_step", bool(self.basis_velocity_step))
        object.__setattr__(self, "mode_scorer", bool(self.mode_scorer))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {unknown}")
        kw = dict(d)
        for key in ("raster_hw", "stage_channels", "channel_names"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if kw.get("raster_from_ego") is not None:
            kw["raster_from_ego"] = tuple(tuple(r) for r in kw["raster_from_ego"])
        return cls(**kw)

    def input_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        """Shapes of the six net inputs for a batch of ``batch`` scenes."""
        h, w = self.raster_hw
        return {
            "raster": (batch, self.in_channels, h, w),
            "agent_hist": (batch, self.n_max, self.hist_steps, HIST_FEATURES),
            "agent_state": (batch, self.n_max, STATE_FEATURES),
            "agent_valid": (batch, self.n_max),
            "ego_state": (batch, EGO_FEATURES),
            "ego_plan": (batch, self.plan_points, 2),
        }

    def output_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        """Shapes of the three net outputs (agent-centric trajectories and scales)."""
        n, k, t = self.n_max, self.num_modes, self.future_steps
        return {"traj": (batch, n, k, t, 2), "probs": (batch, n, k), "scale": (batch, n, k, t, 2)}
