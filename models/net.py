"""Scene-level trajectory prediction net (PyTorch; training and export only, never onboard).

One forward pass per scene:

1. CNN over the ego-centred raster ``(B, C, H_px, W_px)``: 3x3 stride-2 stem, then stride-2
   residual stages. Features of the last two stages are sampled bilinearly (``grid_sample``) at
   each agent's pixel position, and the last stage is average-pooled into a scene feature.
2. Each agent's own kinematic history in its agent frame (MLP) and its ego-frame state.
3. Interaction: ``num_layers`` of multi-head attention among all agents plus an ego node. Each edge
   ``i <- j`` adds a learned per-head bias and a value term computed from the relative position,
   velocity and heading of ``j`` in ``i``'s frame; padded agents are masked out. The ego node
   carries the ego's motion and its plan points, so the plan conditions the other agents.
4. Multi-modal head per agent: K modes, each with a probability, T positions and T per-axis
   Laplace scales, all in the agent frame (origin at the agent, x along its heading).

Inputs and outputs are listed in :data:`prescient.service.model_io.config.INPUT_NAMES` / ``OUTPUT_NAMES`` with shapes
from :meth:`ModelConfig.input_shapes` / ``output_shapes``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prescient.service.model_io.config import EGO_FEATURES, HIST_FEATURES, STATE_FEATURES, ModelConfig

MASK_LOGIT = -1.0e4  # finite, so fully masked rows stay NaN-free in every runtime
MIN_SCALE_M = 0.01


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with an optional stride-2 projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.short(x))


def mlp(sizes: list[int], last_act: bool = False) -> nn.Sequential:
    """Linear/ReLU stack; LayerNorm-free so it exports and runs anywhere."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_act:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class EdgeAttention(nn.Module):
    """Multi-head attention over agent tokens with edge features and a validity mask."""

    def __init__(self, d_model: int, num_heads: int, edge_dim: int = 7) -> None:
        super().__init__()
        self.h = num_heads
        self.dh = d_model // num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.edge = mlp([edge_dim, 64, num_heads + d_model])
        self.out = nn.Linear(d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = mlp([d_model, 2 * d_model, d_model])

    def forward(self, x: torch.Tensor, edges: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """Args: x (B, M, D) tokens; edges (B, M, M, E) features of i <- j; key_mask (B, M) 1 valid."""
        b, m, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q = q.reshape(b, m, self.h, self.dh).transpose(1, 2)  # (B, h, M, dh)
        k = k.reshape(b, m, self.h, self.dh).transpose(1, 2)
        v = v.reshape(b, m, self.h, self.dh).transpose(1, 2)
        e = self.edge(edges)  # (B, M, M, h + D)
        bias = e[..., : self.h].permute(0, 3, 1, 2)  # (B, h, M, M)
        ev = e[..., self.h :].reshape(b, m, m, self.h, self.dh)  # (B, M, M, h, dh)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.dh) + bias
        logits = logits + (1.0 - key_mask)[:, None, None, :] * MASK_LOGIT
        attn = torch.softmax(logits, dim=-1)  # (B, h, M, M)
        out = attn @ v  # (B, h, M, dh)
        out = out + torch.einsum("bhij,bijhc->bhic", attn, ev)
        out = out.transpose(1, 2).reshape(b, m, d)
        x = x + self.out(out)
        return x + self.ffn(self.norm2(x))


class TrajectoryNet(nn.Module):
    """Raster CNN + agent history + ego-conditioned interaction + multi-modal Laplace head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.stem_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(cfg.stem_channels),
            nn.ReLU(),
        )
        stages = []
        c = cfg.stem_channels
        for i, c_out in enumerate(cfg.stage_channels):
            blocks = [BasicBlock(c, c_out, 2)]
            if i > 0:
                blocks.append(BasicBlock(c_out, c_out, 1))
            stages.append(nn.Sequential(*blocks))
            c = c_out
        self.stages = nn.ModuleList(stages)
        sampled = cfg.stage_channels[-1] + (cfg.stage_channels[-2] if len(cfg.stage_channels) > 1 else 0)
        self.hist_enc = mlp([cfg.hist_steps * HIST_FEATURES, 2 * d, d], last_act=True)
        self.agent_enc = mlp([d + STATE_FEATURES + sampled, 2 * d, d])
        self.ego_enc = mlp([EGO_FEATURES + 2 * cfg.plan_points + cfg.stage_channels[-1], 2 * d, d])
        self.layers = nn.ModuleList([EdgeAttention(d, cfg.num_heads) for _ in range(cfg.num_layers)])
        self.head_norm = nn.LayerNorm(d)
        k, t = cfg.num_modes, cfg.future_steps
        self.head = mlp([d + d, 2 * d, k * (4 * t + 1)])
        (a, b_, c0), (d0, e0, f0) = cfg.raster_from_ego
        h_px, w_px = cfg.raster_hw
        # grid_sample (align_corners=False) wants x = 2*col/W - 1, y = 2*row/H - 1.
        grid_from_ego = torch.tensor(
            [
                [2 * a / w_px, 2 * b_ / w_px, 2 * c0 / w_px - 1],
                [2 * d0 / h_px, 2 * e0 / h_px, 2 * f0 / h_px - 1],
            ],
            dtype=torch.float32,
        )
        self.register_buffer("grid_from_ego", grid_from_ego, persistent=False)

    def _sample(self, fmap: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """Bilinear features at grid points: fmap (B, C, h, w), grid (B, N, 2) -> (B, N, C)."""
        s = F.grid_sample(
            fmap, grid[:, :, None, :], mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return s[..., 0].transpose(1, 2)

    def forward_logits(
        self,
        raster: torch.Tensor,
        agent_hist: torch.Tensor,
        agent_state: torch.Tensor,
        agent_valid: torch.Tensor,
        ego_state: torch.Tensor,
        ego_plan: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`forward` but returns mode logits instead of probabilities (training)."""
        cfg = self.cfg
        b, n = agent_valid.shape
        x = self.stem(raster)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        xy = agent_state[..., 0:2]  # (B, N, 2) ego frame
        grid = xy @ self.grid_from_ego[:, :2].T + self.grid_from_ego[:, 2]
        sampled = [self._sample(f, grid) for f in feats[-2:]]
        scene = feats[-1].mean(dim=(2, 3))  # (B, C_last)

        h = self.hist_enc(agent_hist.reshape(b, n, cfg.hist_steps * HIST_FEATURES))
        agent_tok = self.agent_enc(torch.cat([h, agent_state, *sampled], dim=-1))  # (B, N, D)
        ego_tok = self.ego_enc(torch.cat([ego_state, ego_plan.reshape(b, -1), scene], dim=-1))
        tokens = torch.cat([ego_tok[:, None, :], agent_tok], dim=1)  # (B, 1+N, D)

        # Node kinematics in the ego frame; the ego node sits at the origin heading +x.
        zeros = torch.zeros_like(ego_state[:, 0:2])
        ego_kin = torch.cat([zeros, torch.ones_like(zeros[:, :1]), zeros[:, :1], ego_state[:, 0:2]], dim=-1)
        kin = torch.cat([ego_kin[:, None, :], agent_state[..., 0:6]], dim=1)  # (B, M, 6)
        p, cs, v = kin[..., 0:2], kin[..., 2:4], kin[..., 4:6]
        c_i, s_i = cs[..., 0:1, None], cs[..., 1:2, None]  # (B, M, 1, 1)
        dp = p[:, None, :, :] - p[:, :, None, :]  # (B, M_i, M_j, 2): j relative to i, ego frame
        dv = v[:, None, :, :] - v[:, :, None, :]

        def to_i(vec: torch.Tensor) -> torch.Tensor:
            """Rotate ego-frame vectors (B, M, M, 2) into receiver i's frame."""
            return torch.cat(
                [c_i * vec[..., 0:1] + s_i * vec[..., 1:2], -s_i * vec[..., 0:1] + c_i * vec[..., 1:2]],
                dim=-1,
            )

        c_j, s_j = cs[:, None, :, 0:1], cs[:, None, :, 1:2]
        rel_cos = c_i * c_j + s_i * s_j
        rel_sin = c_i * s_j - s_i * c_j
        dist = torch.sqrt((dp * dp).sum(-1, keepdim=True) + 1e-6)
        edges = torch.cat([to_i(dp) / 10.0, to_i(dv) / 5.0, rel_cos, rel_sin, dist / 10.0], dim=-1)
        key_mask = torch.cat([torch.ones_like(agent_valid[:, :1]), agent_valid], dim=1)
        for layer in self.layers:
            tokens = layer(tokens, edges, key_mask)

        out = self.head(torch.cat([self.head_norm(tokens[:, 1:]), agent_tok], dim=-1))
        k, t = cfg.num_modes, cfg.future_steps
        out = out.reshape(b, n, k, 4 * t + 1)
        traj = out[..., : 2 * t].reshape(b, n, k, t, 2)
        scale = F.softplus(out[..., 2 * t : 4 * t].reshape(b, n, k, t, 2)) + MIN_SCALE_M
        logits = out[..., 4 * t]
        return traj, logits, scale

    def forward(
        self,
        raster: torch.Tensor,
        agent_hist: torch.Tensor,
        agent_state: torch.Tensor,
        agent_valid: torch.Tensor,
        ego_state: torch.Tensor,
        ego_plan: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict K trajectories per agent.

        Args:
            raster: (B, C, H_px, W_px) float32 ego-centred raster.
            agent_hist: (B, N, H, 7) agent-frame history features.
            agent_state: (B, N, 15) ego-frame state features and class one-hot.
            agent_valid: (B, N) 1.0 real agent, 0.0 padding.
            ego_state: (B, 5) ``[vx_mps, vy_mps, length_m, width_m, plan_valid]``.
            ego_plan: (B, P, 2) ego plan points, ego frame, metres.

        Returns:
            traj (B, N, K, T, 2) agent frame metres; probs (B, N, K) rows sum to 1;
            scale (B, N, K, T, 2) Laplace scales, metres, > 0.
        """
        traj, logits, scale = self.forward_logits(
            raster, agent_hist, agent_state, agent_valid, ego_state, ego_plan
        )
        return traj, torch.softmax(logits, dim=-1), scale


def wta_laplace_loss(
    traj: torch.Tensor,
    logits: torch.Tensor,
    scale: torch.Tensor,
    future_m: torch.Tensor,
    future_valid: torch.Tensor,
    cls_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Winner-takes-all Laplace NLL plus mode classification cross-entropy.

    Args:
        traj: (B, N, K, T, 2) predicted positions, agent frame.
        logits: (B, N, K) mode logits.
        scale: (B, N, K, T, 2) Laplace scales (> 0).
        future_m: (B, N, T, 2) ground-truth future, agent frame.
        future_valid: (B, N, T) 1 where the ground truth exists (0 for padded agents).
        cls_weight: weight of the cross-entropy term.

    Returns:
        (loss, stats) where stats holds float ``nll``, ``ce``, ``min_ade_m`` over scored agents.
    """
    fv = future_valid.float()
    agent_w = (fv.sum(-1) > 0).float()  # (B, N)
    denom_t = fv.sum(-1).clamp(min=1.0)  # (B, N)
    err = torch.linalg.norm(traj - future_m[:, :, None], dim=-1)  # (B, N, K, T)
    ade = (err * fv[:, :, None]).sum(-1) / denom_t[..., None]  # (B, N, K)
    best = ade.argmin(dim=-1)  # (B, N)
    idx = best[..., None, None, None].expand(-1, -1, 1, traj.shape[3], 2)
    mu = traj.gather(2, idx)[:, :, 0]
    b = scale.gather(2, idx)[:, :, 0]
    nll_t = (torch.log(2 * b) + (future_m - mu).abs() / b).sum(-1)  # (B, N, T)
    nll = (nll_t * fv).sum(-1) / denom_t
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), best.reshape(-1), reduction="none").reshape(
        best.shape
    )
    n_agents = agent_w.sum().clamp(min=1.0)
    nll_m = (nll * agent_w).sum() / n_agents
    ce_m = (ce * agent_w).sum() / n_agents
    min_ade = (ade.min(-1).values * agent_w).sum() / n_agents
    loss = nll_m + cls_weight * ce_m
    return loss, {
        "nll": float(nll_m.detach()),
        "ce": float(ce_m.detach()),
        "min_ade_m": float(min_ade.detach()),
    }
