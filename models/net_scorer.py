"""Mode scorer: a logit correction per mode from the mode's own decoded path.

The head of :class:`prescient.models.net.TrajectoryNet` reads every mode's logit off the agent's
token, through the same linear layer that writes the mode's path: the probability of "turn
left" cannot look at where the left-turn path runs (onto a lane, across a red light, into a
queue). This module scores each decoded path against the raster features under it, like the
trajectory scoring of TNT / MultiPath++, and adds the result to the base logit.

Paths enter detached: the scorer learns to rank the modes the decoder gives, and its gradient
never bends the paths towards what is easy to score.
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
    """Logit correction (B, N, K) from each mode's path and the features under it.

    Args:
        d_model: width of the agent token the head reads.
        feat_channels: channels of the feature map sampled along the paths.
        future_steps: T of the paths (>= 2).
    """

    def __init__(self, d_model: int, feat_channels: int, future_steps: int) -> None:
        super().__init__()
        if future_steps < 2:
            raise ValueError(f"mode scorer needs >= 2 future steps, got {future_steps}")
        points = horizon_steps(POINT_FRACTIONS, future_steps)
        samples = horizon_steps(SAMPLE_FRACTIONS, future_steps)
        self.register_buffer("point_idx", torch.tensor(points), persistent=False)
        self.register_buffer("sample_idx", torch.tensor(samples), persistent=False)
        n_in = d_model + 2 * len(points) + 2 + feat_channels * len(samples) + 1
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

        Returns:
            (B, N, K) logits.
        """
        b, n, k, _, _ = traj.shape
        path = traj.detach()
        pts = path.index_select(3, self.point_idx)  # (B, N, K, P, 2)
        end_v = (path[:, :, :, -1] - path[:, :, :, -2]) / dt_s  # (B, N, K, 2) m/s
        feats = self.sample_under(path, agent_state, fmap, grid_from_ego).reshape(b, n, k, -1)
        x = torch.cat(
            [
                token[:, :, None, :].expand(-1, -1, k, -1),
                pts.reshape(b, n, k, -1) / 10.0,
                end_v / 10.0,
                feats,
                base_logits[..., None].detach(),
            ],
            dim=-1,
        )
        return base_logits + self.net(x)[..., 0]

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
