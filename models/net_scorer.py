"""Mode scorer: a logit correction per mode from the mode's own decoded path.

The head of :class:`prescient.models.net.TrajectoryNet` reads every mode's logit off the agent's
token, through the same linear layer that writes the mode's path: the probability of "turn
left" cannot look at where the left-turn path runs (onto a lane, across a red light, into a
queue). This module scores each decoded path against the raster features under it, like the
trajectory scoring of TNT / MultiPath++, and adds the result to the base logit.

Paths enter detached: the scorer learns to rank the modes the decoder gives, and its gradient
never bends the paths towards what is easy to score.

The scorer also sees where the ego's plan is at each path point's time, relative to that point
(the agent's frame): a path that stops short of where the plan stops is likely under a "stop"
plan and unlikely under "keep speed". Without it the scorer ranks paths as if every plan were
the usual one and damps the reactions the plan pathway learned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Fractions of the horizon where the scorer sees a path's position, and where it samples the
# raster features under it: at T = 80 steps of 0.1 s, 1, 2, 4, 6, 8 s and 2, 4, 6, 8 s.
POINT_FRACTIONS = (1 / 8, 2 / 8, 4 / 8, 6 / 8, 1.0)
SAMPLE_FRACTIONS = (2 / 8, 4 / 8, 6 / 8, 1.0)


def horizon_steps(fractions: tuple[float, ...], future_steps: int) -> list[int]:
    """Step indices (0-based) at these fractions of a T-step horizon."""
    return [max(0, int(round(f * future_steps)) - 1) for f in fractions]


class ModeScorer(nn.Module):
    """Logit correction (B, N, K) from each mode's path relative to the other modes, the features
    under it and the plan around it.

    Args:
        d_model: width of the agent token the head reads.
        feat_channels: channels of the feature map sampled along the paths.
        future_steps: T of the paths (>= 2).
        plan_points: P of the ego plan (>= 2), resampled evenly in index from the T-step plan.
    """

    def __init__(self, d_model: int, feat_channels: int, future_steps: int, plan_points: int) -> None:
        super().__init__()
        if future_steps < 2 or plan_points < 2:
            raise ValueError(
                f"mode scorer needs >= 2 future steps and plan points, got {future_steps}, {plan_points}"
            )
        points = horizon_steps(POINT_FRACTIONS, future_steps)
        samples = horizon_steps(SAMPLE_FRACTIONS, future_steps)
        # The plan point nearest in time to each path point (features.resample_plan's spacing).
        plan = [int(round(i * (plan_points - 1) / (future_steps - 1))) for i in points]
        self.register_buffer("point_idx", torch.tensor(points), persistent=False)
        self.register_buffer("sample_idx", torch.tensor(samples), persistent=False)
        self.register_buffer("plan_idx", torch.tensor(plan), persistent=False)
        n_in = d_model + 2 * len(points) + 2 + feat_channels * len(samples) + 1 + 3 * len(points) + 1
        self.net = nn.Sequential(nn.Linear(n_in, 2 * d_model), nn.ReLU(), nn.Linear(2 * d_model, 1))
        # Zero output at first: a model that gains the scorer keeps its function until trained.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(
        self,
        token: torch.Tensor,
        traj: torch.Tensor,
        base_logits: torch.Tensor,
        agent_state: torch.Tensor,
        fmap: torch.Tensor,
        grid_from_ego: torch.Tensor,
        dt_s: float,
        ego_plan: torch.Tensor,
        plan_valid: torch.Tensor,
    ) -> torch.Tensor:
        """Corrected logits.

        Args:
            token: (B, N, D) the agent tokens the head reads.
            traj: (B, N, K, T, 2) decoded paths, agent frame metres (detached here).
            base_logits: (B, N, K) the head's logits.
            agent_state: (B, N, >=4) ego-frame position (0:2) and heading cos, sin (2:4).
            fmap: (B, C, h, w) raster features (the map the paths are drawn on).
            grid_from_ego: (2, 3) ego metres -> grid_sample coordinates.
            dt_s: path step, seconds.
            ego_plan: (B, P, 2) plan points, ego frame, metres.
            plan_valid: (B,) 1 where the plan is real, 0 where it is a placeholder.

        Returns:
            (B, N, K) logits.
        """
        b, n, k, _, _ = traj.shape
        path = traj.detach()
        pts = path.index_select(3, self.point_idx)  # (B, N, K, P, 2)
        end_v = (path[:, :, :, -1] - path[:, :, :, -2]) / dt_s  # (B, N, K, 2) m/s
        # Each mode's shape relative to the mean of the K modes: when the plan moves the whole fan
        # (a car that can go on because the ego stops), the scorer must not pull it back towards
        # how far agents usually go. How far the fan goes is the paths' business.
        pts_rel = pts - pts.mean(dim=2, keepdim=True)
        end_v_rel = end_v - end_v.mean(dim=2, keepdim=True)
        feats = self.sample_under(path, agent_state, fmap, grid_from_ego).reshape(b, n, k, -1)
        gap = self.plan_gap(pts, agent_state, ego_plan, plan_valid)  # (B, N, K, P, 3)
        valid = plan_valid[:, None, None, None].expand(-1, n, k, 1)
        x = torch.cat(
            [
                token[:, :, None, :].expand(-1, -1, k, -1),
                pts_rel.reshape(b, n, k, -1) / 10.0,
                end_v_rel / 10.0,
                feats,
                base_logits[..., None].detach(),
                gap.reshape(b, n, k, -1),
                valid,
            ],
            dim=-1,
        )
        return base_logits + self.net(x)[..., 0]

    def plan_gap(
        self, pts: torch.Tensor, agent_state: torch.Tensor, ego_plan: torch.Tensor, plan_valid: torch.Tensor
    ) -> torch.Tensor:
        """(B, N, K, P, 3): where the plan is at each path point's time, relative to the point, in
        the agent's frame (/10 m), and that distance (/10 m, soft-clipped at 50 m); zeros where the
        plan is not valid. ``pts`` (B, N, K, P, 2) are path points in the agent frame."""
        c = agent_state[..., 2][:, :, None, None]
        s = agent_state[..., 3][:, :, None, None]
        plan = ego_plan.index_select(1, self.plan_idx)[:, None, None]  # (B, 1, 1, P, 2) ego frame
        # Plan point -> agent frame: shift by the agent's position, rotate by minus its heading.
        rx = plan[..., 0] - agent_state[..., 0][:, :, None, None]
        ry = plan[..., 1] - agent_state[..., 1][:, :, None, None]
        gx = c * rx + s * ry - pts[..., 0]
        gy = -s * rx + c * ry - pts[..., 1]
        dist = torch.sqrt(gx * gx + gy * gy + 1e-6)
        out = torch.stack([gx / 10.0, gy / 10.0, 5.0 * torch.tanh(dist / 50.0)], dim=-1)
        return out * plan_valid[:, None, None, None, None]

    def sample_under(
        self, traj: torch.Tensor, agent_state: torch.Tensor, fmap: torch.Tensor, grid_from_ego: torch.Tensor
    ) -> torch.Tensor:
        """(B, N, K, S, C) features of ``fmap`` (B, C, h, w) under the paths ``traj`` (B, N, K, T, 2,
        agent frame) at the sample steps; zeros outside the map."""
        b, n, k, _, _ = traj.shape
        # Agent frame -> ego frame: rotate by the agent's heading, then shift to its position.
        c = agent_state[..., 2][:, :, None, None]
        s = agent_state[..., 3][:, :, None, None]
        under = traj.index_select(3, self.sample_idx)  # (B, N, K, S, 2)
        ex = c * under[..., 0] - s * under[..., 1] + agent_state[..., 0][:, :, None, None]
        ey = s * under[..., 0] + c * under[..., 1] + agent_state[..., 1][:, :, None, None]
        ego_xy = torch.stack([ex, ey], dim=-1).reshape(b, -1, 2)
        grid = ego_xy @ grid_from_ego[:, :2].T + grid_from_ego[:, 2]
        out = F.grid_sample(
            fmap, grid[:, :, None, :], mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return out[..., 0].transpose(1, 2).reshape(b, n, k, self.sample_idx.shape[0], -1)
