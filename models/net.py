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
   With ``cfg.plan_attention`` each agent also cross-attends, after every interaction layer, to
   the P plan points as its own tokens: each carries the point's position, step and heading
   relative to *that* agent (its frame), so an agent sees whether and when the plan comes near it.
4. Multi-modal head per agent: K modes, each with a probability, T positions and T per-axis
   Laplace scales, all in the agent frame (origin at the agent, x along its heading). The
   ``"direct"`` decoder regresses the T positions freely; the ``"basis"`` decoder regresses a
   bounded acceleration profile and integrates it (:func:`accel_basis`), smooth by construction.

Inputs and outputs are listed in :data:`prescient.service.model_io.config.INPUT_NAMES` / ``OUTPUT_NAMES`` with shapes
from :meth:`ModelConfig.input_shapes` / ``output_shapes``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prescient.models.net_scorer import ModeScorer
from prescient.service.model_io.config import EGO_FEATURES, HIST_FEATURES, STATE_FEATURES, ModelConfig

MASK_LOGIT = -1.0e4  # finite, so fully masked rows stay NaN-free in every runtime
MIN_SCALE_M = 0.01
# "basis" decoder: bound on the per-mode correction of the tracked current velocity. Enough for
# tracker noise and a start/stop; what the velocity does later is the acceleration's business.
MAX_DV_MPS = 3.0
PLAN_FEATURES = 11  # per (agent, plan point); see TrajectoryNet._plan_tokens


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


def accel_basis(future_steps: int, dt_s: float, knot_s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and rates from a piecewise-linear profile on knots ``0, knot_s, 2 knot_s, ...``.

    Why this basis: a per-mode acceleration ``a(t)`` (agent frame, m/s^2) that is linear between
    knots, integrated twice from the agent's current velocity, is physical (it starts where and
    as fast as the agent is), linear in the coefficients (one constant matmul in the graph) and
    smooth by construction: the hat functions are a partition of unity, so a bound on each
    knot's acceleration norm bounds ``|a(t)|`` everywhere, and every second difference of the
    positions is a triangle-weighted mean of ``a`` times ``dt_s**2``. Cartesian acceleration in
    the (fixed) agent frame rather than a unicycle keeps it linear and lets pedestrians step
    sideways. Closed form via truncated powers, exact in float64.

    Args:
        future_steps: T.
        dt_s: step, seconds; outputs are at ``t = dt_s * (1..T)``.
        knot_s: knot spacing, seconds; the last knot is at or after ``T * dt_s``.

    Returns:
        pos (T, J): position (m) at each step from a unit acceleration (1 m/s^2) hat on knot j,
        starting at rest at the origin; rate (T, J): the hat's integral (m/s per unit), >= 0 and
        nondecreasing in t (used to grow scales monotonically). float32.
    """
    t = torch.arange(1, future_steps + 1, dtype=torch.float64)[:, None] * dt_s  # (T, 1)
    n_knots = math.ceil(future_steps * dt_s / knot_s - 1e-9) + 1
    knots = torch.arange(n_knots, dtype=torch.float64)[None, :] * knot_s  # (1, J)

    def once(a: torch.Tensor) -> torch.Tensor:
        """int_0^t (s - a)_+ ds."""
        return ((t - a).clamp(min=0) ** 2 - (-a).clamp(min=0) ** 2) / 2

    def twice(a: torch.Tensor) -> torch.Tensor:
        """int_0^t (t - s) (s - a)_+ ds (position from the ramp, zero start and speed)."""
        neg = (-a).clamp(min=0)
        return ((t - a).clamp(min=0) ** 3 - neg**3) / 6 - neg**2 * t / 2

    # Hat on knot j = ((s - k_{j-1})_+ - 2 (s - k_j)_+ + (s - k_{j+1})_+) / knot_s; the first
    # hat's left ramp starts before 0 (only its part s >= 0 counts).
    pos = (twice(knots - knot_s) - 2 * twice(knots) + twice(knots + knot_s)) / knot_s
    rate = (once(knots - knot_s) - 2 * once(knots) + once(knots + knot_s)) / knot_s
    return pos.float(), rate.float()


def to_frame(vec: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate vectors (..., 2) by ``-yaw`` (given cos/sin broadcastable to (..., 1))."""
    x, y = vec[..., 0:1], vec[..., 1:2]
    return torch.cat([cos * x + sin * y, -sin * x + cos * y], dim=-1)


class PlanAttention(nn.Module):
    """Each agent token attends to its own P plan tokens (no mask: every plan point exists).

    Keys and values come from :meth:`TrajectoryNet._plan_tokens`, shared by all layers (they do
    not depend on the agent tokens; sharing halves the cost of the plan path, 2 N P D^2 MACs per
    layer at N = 128, P = 16). Args of forward: x (B, N, D) agent tokens; keys (B, N, h, dh, P)
    and values (B, N, h, P, dh), already split into heads (once for all layers).
    """

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.h = num_heads
        self.dh = d_model // num_heads
        self.norm = nn.LayerNorm(d_model)
        self.q = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q = self.q(self.norm(x)).reshape(b, n, self.h, 1, self.dh)
        attn = torch.softmax(q @ keys / math.sqrt(self.dh), dim=-1)  # (B, N, h, 1, P)
        return x + self.out((attn @ values).reshape(b, n, d))


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
        # The edge MLP's last layer gives a per-head bias and a per-edge value term. The value
        # term is summed over j with the attention weights, so it is applied after that sum:
        # sum_j attn_ij (W hid_ij + c) = W (sum_j attn_ij hid_ij) + c (the weights sum to 1). Same
        # parameters and result as building the (B, M, M, D) value tensor, without building it:
        # the interaction cost drops from O(M^2 D) to O(M^2 F + M F D) (F = 64 hidden).
        # On a 2-D (B M M, E) view the pair MLP exports as Gemm, which onnxruntime fuses with
        # its bias and ReLU (a 4-D MatMul leaves them as separate passes over M^2 F values).
        hid_2d = self.edge[:-1](edges.reshape(-1, edges.shape[-1]))  # (B M M, F)
        w, c = self.edge[-1].weight, self.edge[-1].bias  # (h + D, F), (h + D,)
        bias = F.linear(hid_2d, w[: self.h], c[: self.h]).reshape(b, m, m, self.h).permute(0, 3, 1, 2)
        hid = hid_2d.reshape(b, m, m, -1)  # (B, M, M, F)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.dh) + bias
        logits = logits + (1.0 - key_mask)[:, None, None, :] * MASK_LOGIT
        attn = torch.softmax(logits, dim=-1)  # (B, h, M, M)
        out = attn @ v  # (B, h, M, dh)
        pooled = (attn.transpose(1, 2) @ hid).transpose(1, 2)  # (B, h, M, F): sum_j attn_ij hid_ij
        w_val = w[self.h :].reshape(self.h, self.dh, -1).transpose(1, 2)  # (h, F, dh)
        out = out + pooled @ w_val + c[self.h :].reshape(self.h, 1, self.dh)
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
        if cfg.plan_attention:  # new names only when on: "direct" checkpoints keep theirs
            self.plan_enc = mlp([PLAN_FEATURES, d, 2 * d])  # -> keys and values of every layer
            self.plan_layers = nn.ModuleList([PlanAttention(d, cfg.num_heads) for _ in range(cfg.num_layers)])
            t, p = cfg.future_steps, cfg.plan_points
            # Plan point i is resampled evenly in index from the T-step plan (features.resample_plan),
            # so it sits at step 1 + i (T-1)/(P-1); seconds.
            plan_t = (1.0 + torch.arange(p, dtype=torch.float32) * (t - 1) / max(p - 1, 1)) * cfg.dt_s
            self.register_buffer("plan_t_s", plan_t, persistent=False)
        self.head_norm = nn.LayerNorm(d)
        k, t = cfg.num_modes, cfg.future_steps
        if cfg.decoder == "basis":
            pos, rate = accel_basis(t, cfg.dt_s, cfg.basis_knot_s)
            self.register_buffer("basis_pos", pos, persistent=False)  # (T, J)
            self.register_buffer("basis_rate", rate, persistent=False)  # (T, J)
            t_s = torch.arange(1, t + 1, dtype=torch.float32) * cfg.dt_s
            # Derived constants of _decode_basis (not saved: checkpoints hold weights only).
            self.register_buffer(
                "traj_basis", torch.cat([pos, t_s[:, None]], 1), persistent=False
            )  # (T, J+1)
            ones = torch.ones(t, 1)
            self.register_buffer("scale_basis", torch.cat([ones, rate], 1), persistent=False)  # (T, J+1)
            j = pos.shape[1]
            bound = torch.full((j + 1, 1), float(cfg.max_accel_mps2))
            # Without the velocity step its two head outputs per mode stay (bound 0) so that
            # checkpoints of both settings share one shape.
            bound[j] = MAX_DV_MPS if cfg.basis_velocity_step else 0.0
            self.register_buffer("coef_bound", bound, persistent=False)  # (J+1, 1)
            self.register_buffer("vel_row", (torch.arange(j + 1) == j).float()[:, None], persistent=False)
            self.per_mode = 4 * pos.shape[1] + 5  # accel 2J, dv 2, scale base 2, scale growth 2J, logit
        else:
            self.per_mode = 4 * t + 1  # positions 2T, scales 2T, logit
        self.head = mlp([d + d, 2 * d, k * self.per_mode])
        if cfg.mode_scorer:  # new names only when on: checkpoints without it keep theirs
            fmap_channels = cfg.stage_channels[-2 if len(cfg.stage_channels) > 1 else -1]
            self.scorer = ModeScorer(d, fmap_channels, t, cfg.plan_points)
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

    def _edges(self, agent_state: torch.Tensor, ego_state: torch.Tensor) -> torch.Tensor:
        """Edge features (B, M, M, 7) of i <- j over the ego node plus the N agents (M = 1 + N)."""
        # Node kinematics in the ego frame; the ego node sits at the origin heading +x.
        zeros = torch.zeros_like(ego_state[:, 0:2])
        ego_kin = torch.cat([zeros, torch.ones_like(zeros[:, :1]), zeros[:, :1], ego_state[:, 0:2]], dim=-1)
        kin = torch.cat([ego_kin[:, None, :], agent_state[..., 0:6]], dim=1)  # (B, M, 6)
        p, cs, v = kin[..., 0:2], kin[..., 2:4], kin[..., 4:6]
        c_i, s_i = cs[..., 0:1, None], cs[..., 1:2, None]  # (B, M, 1, 1)
        dp = p[:, None, :, :] - p[:, :, None, :]  # (B, M_i, M_j, 2): j relative to i, ego frame
        dv = v[:, None, :, :] - v[:, :, None, :]
        c_j, s_j = cs[:, None, :, 0:1], cs[:, None, :, 1:2]
        rel_cos = c_i * c_j + s_i * s_j
        rel_sin = c_i * s_j - s_i * c_j
        dist = torch.sqrt((dp * dp).sum(-1, keepdim=True) + 1e-6)
        return torch.cat(
            [to_frame(dp, c_i, s_i) / 10.0, to_frame(dv, c_i, s_i) / 5.0, rel_cos, rel_sin, dist / 10.0],
            dim=-1,
        )

    def _plan_tokens(
        self, agent_state: torch.Tensor, ego_state: torch.Tensor, ego_plan: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Plan keys (B, N, h, dh, P) and values (B, N, h, P, dh): each plan point as seen from
        each agent, in its frame, split into the attention heads.

        Features (PLAN_FEATURES), agent frame: the point relative to the agent (/10 m) and its
        distance; the plan's displacement into the point (from the previous point, the ego for
        the first; /5 m) and its soft-normalised direction (-> 0 when the plan stands still);
        the point relative to where the agent would be at that time at constant velocity
        (/10 m: does the plan come near it, and when); the point's time as a fraction of the
        horizon; the plan-valid flag.
        """
        c, s = agent_state[..., 2:3, None], agent_state[..., 3:4, None]  # (B, N, 1, 1)
        rel = to_frame(ego_plan[:, None] - agent_state[:, :, None, 0:2], c, s)  # (B, N, P, 2)
        prev = torch.cat([torch.zeros_like(ego_plan[:, :1]), ego_plan[:, :-1]], dim=1)
        step = to_frame((ego_plan - prev)[:, None], c, s)  # (B, N, P, 2)
        heading = step / torch.sqrt((step * step).sum(-1, keepdim=True) + 0.25)
        dist = torch.sqrt((rel * rel).sum(-1, keepdim=True) + 1e-6)
        v_agent = to_frame(agent_state[..., 4:6], c[..., 0], s[..., 0])  # (B, N, 2)
        plan_t = self.plan_t_s[:, None]  # (P, 1)
        gap = rel - v_agent[:, :, None, :] * plan_t
        tfrac = (plan_t / (self.cfg.future_steps * self.cfg.dt_s)).expand_as(dist)
        valid = ego_state[:, None, None, 4:5].expand_as(dist)
        feat = torch.cat([rel / 10.0, dist / 10.0, step / 5.0, heading, gap / 10.0, tfrac, valid], dim=-1)
        b, n, p, _ = feat.shape
        h = self.cfg.num_heads
        kv = self.plan_enc(feat.reshape(-1, feat.shape[-1]))  # 2-D: Gemm with fused bias and ReLU
        k, v = kv.reshape(b, n, p, 2, h, -1).unbind(3)  # (B, N, P, h, dh) each
        return k.permute(0, 1, 3, 4, 2), v.permute(0, 1, 3, 2, 4)

    def _decode_basis(
        self, out: torch.Tensor, agent_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Head output (B, N, K, per_mode) -> traj, scale (B, N, K, T, 2), agent frame metres."""
        j = self.basis_pos.shape[1]
        b, n, k, _ = out.shape
        # Coefficient rows 0..J-1: acceleration at the knots; row J: the velocity change at t=0
        # (bound 0 without cfg.basis_velocity_step). Both soft-clamped at once (per-row bounds),
        # then the agent's velocity joins row J.
        raw = out[..., : 2 * j + 2].reshape(b, n, k, j + 1, 2)
        coef = self.coef_bound * raw / torch.sqrt(1.0 + (raw * raw).sum(-1, keepdim=True))
        v0 = to_frame(agent_state[..., 4:6], agent_state[..., 2:3], agent_state[..., 3:4])  # (B, N, 2)
        coef = coef + v0[:, :, None, None, :] * self.vel_row  # (J+1, 1) one-hot at row J
        # (T, J+1) @ (B, N, K, J+1, 2): integrated acceleration plus the straight line in one
        # product (cheaper at inference than broadcasting (..., T, 2) sums).
        traj = self.traj_basis @ coef
        # Rows: the scale at t=0 (metres), then its growth rate at the knots (m/s); both >= 0.
        spread = F.softplus(out[..., 2 * j + 2 : 4 * j + 4].reshape(b, n, k, j + 1, 2))
        scale = self.scale_basis @ spread + MIN_SCALE_M  # nondecreasing in t
        return traj, scale

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

        edges = self._edges(agent_state, ego_state)
        key_mask = torch.cat([torch.ones_like(agent_valid[:, :1]), agent_valid], dim=1)
        plan_kv = self._plan_tokens(agent_state, ego_state, ego_plan) if cfg.plan_attention else None
        for i, layer in enumerate(self.layers):
            tokens = layer(tokens, edges, key_mask)
            if plan_kv is not None:
                tokens = torch.cat([tokens[:, :1], self.plan_layers[i](tokens[:, 1:], *plan_kv)], dim=1)

        token = self.head_norm(tokens[:, 1:])
        out = self.head(torch.cat([token, agent_tok], dim=-1))
        k, t = cfg.num_modes, cfg.future_steps
        out = out.reshape(b, n, k, self.per_mode)
        logits = out[..., -1]
        if cfg.decoder == "basis":
            traj, scale = self._decode_basis(out, agent_state)
        else:
            traj = out[..., : 2 * t].reshape(b, n, k, t, 2)
            scale = F.softplus(out[..., 2 * t : 4 * t].reshape(b, n, k, t, 2)) + MIN_SCALE_M
        if cfg.mode_scorer:
            fmap = feats[-2 if len(feats) > 1 else -1]
            logits = self.scorer(
                token,
                traj,
                logits,
                agent_state,
                fmap,
                self.grid_from_ego,
                cfg.dt_s,
                ego_plan,
                ego_state[:, 4],
            )
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
    mixture_weight: float = 0.0,
    soft_target_m: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Winner-takes-all Laplace NLL plus mode classification cross-entropy (+ mixture NLL).

    WTA trains only the winning mode's path and scale and labels it with a hard target, so the
    other modes drift wide and the probabilities over-commit. ``mixture_weight > 0`` adds the
    NLL of the future under the full K-mode mixture (per valid step): every mode's scale and
    the probabilities get gradient by their posterior responsibility, which calibrates the
    probabilities and pulls in modes that claim mass where the futures are not.

    Args:
        traj: (B, N, K, T, 2) predicted positions, agent frame.
        logits: (B, N, K) mode logits.
        scale: (B, N, K, T, 2) Laplace scales (> 0).
        future_m: (B, N, T, 2) ground-truth future, agent frame.
        future_valid: (B, N, T) 1 where the ground truth exists (0 for padded agents).
        cls_weight: weight of the cross-entropy term.
        mixture_weight: weight of the mixture NLL term; 0 (default) is the plain WTA loss.
        soft_target_m: 0 (default): the classification target is the winning mode. > 0: the
            target is ``softmax(-ADE_k / soft_target_m)`` over modes (metres), so a mode that
            is often near the truth without being the closest (a central one) earns probability;
            this trades calibration of "the top mode is the closest" for a better top mode.

    Returns:
        (loss, stats) where stats holds float ``nll``, ``ce``, ``min_ade_m`` over scored agents,
        and ``mix_nll`` (per step) when ``mixture_weight > 0``.
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
    if soft_target_m > 0:
        target = torch.softmax(-ade.detach() / soft_target_m, dim=-1)
        ce = -(target * F.log_softmax(logits, dim=-1)).sum(-1)
    else:
        ce = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), best.reshape(-1), reduction="none"
        ).reshape(best.shape)
    n_agents = agent_w.sum().clamp(min=1.0)
    nll_m = (nll * agent_w).sum() / n_agents
    ce_m = (ce * agent_w).sum() / n_agents
    min_ade = (ade.min(-1).values * agent_w).sum() / n_agents
    loss = nll_m + cls_weight * ce_m
    stats = {"nll": float(nll_m.detach()), "ce": float(ce_m.detach()), "min_ade_m": float(min_ade.detach())}
    if mixture_weight > 0:
        logp_t = -(torch.log(2 * scale) + (future_m[:, :, None] - traj).abs() / scale).sum(-1)  # (B, N, K, T)
        logp = (logp_t * fv[:, :, None]).sum(-1) + F.log_softmax(logits, dim=-1)  # (B, N, K)
        mix = -torch.logsumexp(logp, dim=-1) / denom_t  # (B, N) per valid step
        mix_m = (mix * agent_w).sum() / n_agents
        loss = loss + mixture_weight * mix_m
        stats["mix_nll"] = float(mix_m.detach())
    return loss, stats
