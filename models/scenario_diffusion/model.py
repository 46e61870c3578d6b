"""The networks: scene VAE (agent raster -> 4x16x16 latent -> detection grid) and the latent U-Net.

Shapes (B = batch): agent raster ``(B, GRID_CHANNELS + 1, 64, 64)`` (the detection grid of
:mod:`prescient.models.scenario_diffusion.grid` plus the box footprint), map raster ``(B, N_MAP, 64, 64)``,
latent ``(B, 4, 16, 16)``, tokens ``(B, K, TOKEN_DIM)`` with a validity mask ``(B, K)`` and a
global scene token ``(B, GLOBAL_DIM)`` with its own mask ``(B,)`` (False = unconditional).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prescient.models.scenario_diffusion import grid as G
from prescient.models.scenario_diffusion.data import N_MAP
from prescient.models.scenario_diffusion.tokens import GLOBAL_DIM, TOKEN_DIM

LATENT_CH = 4
LATENT_HW = 16


@dataclass(frozen=True)
class ModelConfig:
    """Widths of both networks (the shipped weights record theirs)."""

    vae_width: int = 16
    unet_width: int = 32
    token_width: int = 64
    n_heads: int = 4
    diffusion_steps: int = 1000
    # Agent tokens also drawn as a raster and added to the U-Net input (see ``rasterize_tokens``).
    # False only for weights trained before it existed.
    pin_raster: bool = True
    # Pinned agents also encoded by the (frozen) VAE encoder and given to the U-Net as input
    # channels (see ``pin_condition``). False only for weights trained before it existed.
    pin_latent: bool = True


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class Res(nn.Module):
    """Residual conv block with an optional additive time embedding."""

    def __init__(self, cin: int, cout: int, temb: int = 0) -> None:
        super().__init__()
        self.n1, self.c1 = _gn(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = _gn(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout) if temb else None
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        if self.t is not None and t is not None:
            h = h + self.t(t)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return h + self.skip(x)


class SceneVAE(nn.Module):
    """Encoder (agent raster + map) -> N(mu, sigma) over (4, 16, 16); decoder (latent + map) -> grid.

    Widths w / 2w / 4w at 64 / 32 / 16 px; the decoder sees the map at every scale.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w = cfg.vae_width
        cin = G.GRID_CHANNELS + 1 + N_MAP
        self.enc = nn.Sequential(
            nn.Conv2d(cin, w, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),  # 32 px
            Res(2 * w, 2 * w),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),  # 16 px
            Res(4 * w, 4 * w),
            _gn(4 * w),
            nn.SiLU(),
            nn.Conv2d(4 * w, 2 * LATENT_CH, 1),
        )
        self.d16 = nn.Sequential(
            nn.Conv2d(LATENT_CH + N_MAP, 4 * w, 3, padding=1), Res(4 * w, 4 * w), Res(4 * w, 4 * w)
        )
        self.d32 = nn.Sequential(nn.Conv2d(4 * w + N_MAP, 2 * w, 3, padding=1), Res(2 * w, 2 * w))
        c64 = w + 8
        self.d64 = nn.Sequential(nn.Conv2d(2 * w + N_MAP, c64, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(c64, c64, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(c64, G.GRID_CHANNELS, 1))  # fmt: skip

    def encode(self, agents: torch.Tensor, map_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (B, 4, 16, 16)."""
        h = self.enc(torch.cat([agents, map_r], 1))
        mu, logvar = h.chunk(2, 1)
        return mu, logvar.clamp(-12.0, 6.0)

    def decode(self, z: torch.Tensor, map_r: torch.Tensor) -> torch.Tensor:
        """(B, GRID_CHANNELS, 64, 64) raw grid (``obj`` and ``cls`` are logits)."""
        m32 = F.avg_pool2d(map_r, 2)
        m16 = F.avg_pool2d(m32, 2)
        h = self.d16(torch.cat([z, m16], 1))
        h = self.d32(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), m32], 1))
        return self.d64(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), map_r], 1))


def grid_probabilities(raw: torch.Tensor) -> torch.Tensor:
    """Raw decoder output -> grid with ``obj`` as a probability and ``cls`` as softmax scores."""
    out = raw.clone()
    out[:, G.CH_OBJ] = torch.sigmoid(raw[:, G.CH_OBJ])
    out[:, G.CH_CLS : G.CH_CLS + G.N_CLASSES] = torch.softmax(raw[:, G.CH_CLS : G.CH_CLS + G.N_CLASSES], 1)
    return out


# Class weights of the VAE's classification loss: (frequency in the training scenes)^-1/2,
# normalised to mean 1 (car .31, truck .03, bus .017, pedestrian .45, cyclist .09, animal .10),
# so buses are not decoded as cars.
_FREQ = torch.tensor([0.31, 0.03, 0.017, 0.45, 0.09, 0.10])
CLASS_WEIGHTS = _FREQ.rsqrt() / _FREQ.rsqrt().mean()


def vae_loss(raw: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             kl_weight: float) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """Detection loss (BCE on obj, CE on class and L1 on regressions at agent cells) + KL."""
    obj_t = target[:, G.CH_OBJ]
    pos = obj_t > 0.5
    bce = F.binary_cross_entropy_with_logits(raw[:, G.CH_OBJ], obj_t, pos_weight=torch.tensor(8.0))
    n_pos = pos.sum().clamp(min=1)
    cls_logits = raw[:, G.CH_CLS : G.CH_CLS + G.N_CLASSES].permute(0, 2, 3, 1)[pos]
    cls_t = target[:, G.CH_CLS : G.CH_CLS + G.N_CLASSES].permute(0, 2, 3, 1)[pos].argmax(-1)
    ce = F.cross_entropy(cls_logits, cls_t, weight=CLASS_WEIGHTS) if len(cls_t) else raw.sum() * 0.0
    reg = (raw[:, G.CH_COS :] - target[:, G.CH_COS :]).abs().permute(0, 2, 3, 1)[pos]
    l1 = reg.sum() / n_pos
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    total = 10.0 * bce + ce + l1 + kl_weight * kl
    return total, {
        "bce": float(bce.detach()),
        "ce": float(ce.detach()),
        "l1": float(l1.detach()),
        "kl": float(kl.detach()),
    }


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, dim) sinusoidal embedding of integer timesteps (B,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(a), torch.cos(a)], 1)


class CrossAttn(nn.Module):
    """Pixels (queries) attend to tokens (keys/values), residual."""

    def __init__(self, ch: int, tok: int, heads: int) -> None:
        super().__init__()
        self.norm = _gn(ch)
        self.attn = nn.MultiheadAttention(ch, heads, kdim=tok, vdim=tok, batch_first=True)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(q, tokens, tokens, key_padding_mask=pad, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class TokenEncoder(nn.Module):
    """Agent tokens (B, K, TOKEN_DIM) + global token (B, GLOBAL_DIM) -> (B, K + 2, D) and a pad mask.

    Slot 0 is an always-present learned "null" token (so no query ever attends to nothing), slot 1
    the global scene token (padded when absent), then the K agent tokens.
    """

    def __init__(self, d: int) -> None:
        super().__init__()
        self.agent = nn.Sequential(nn.Linear(TOKEN_DIM, d), nn.SiLU(), nn.Linear(d, d))
        self.glob = nn.Sequential(nn.Linear(GLOBAL_DIM, d), nn.SiLU(), nn.Linear(d, d))
        self.null = nn.Parameter(torch.zeros(1, 1, d))
        self.kind = nn.Parameter(torch.zeros(2, d))

    def forward(self, agent_tok: torch.Tensor, agent_mask: torch.Tensor, glob: torch.Tensor,
                glob_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        b = agent_tok.shape[0]
        a = self.agent(agent_tok) + self.kind[0]
        g = (self.glob(glob) + self.kind[1])[:, None]
        toks = torch.cat([self.null.expand(b, 1, -1), g, a], 1)
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool), glob_mask[:, None], agent_mask], 1)
        return toks, ~keep


PIN_CHANNELS = 12


def rasterize_tokens(agent_tok: torch.Tensor, agent_mask: torch.Tensor) -> torch.Tensor:
    """Draw agent tokens (B, K, TOKEN_DIM) with mask (B, K) into a (B, PIN_CHANNELS, 64, 64) raster.

    Channels (scene-window pixels, ego frame, raster convention of :mod:`grid`): box footprint,
    footprint x (cos, sin of heading, class one-hot (6), speed, curvature), and a Gaussian
    (sigma 1 m) at the box centre, so sub-pixel position survives the stride-4 encoder.

    Why: cross-attention alone has to learn to match a token's coordinates to pixel positions;
    on a 2-core training budget it did not (2 / 87 pins found). Drawn pins are local evidence a
    convolution picks up in a few thousand steps. Dropped tokens (mask False) draw nothing, so
    classifier-free guidance still has a true unconditional branch.
    """
    b, k, _ = agent_tok.shape
    idx = torch.arange(G.H, dtype=torch.float32) + 0.5
    px = ((G.H / 2 - idx) * G.RES_M)[:, None]  # (H, 1) ego x of pixel centres
    py = ((G.W / 2 - idx) * G.RES_M)[None, :]  # (1, W) ego y
    tok = agent_tok[..., None, None]
    x, y = tok[:, :, 6] * G.EXTENT_M, tok[:, :, 7] * G.EXTENT_M
    c, s = tok[:, :, 8], tok[:, :, 9]
    half_l, half_w = 0.5 * tok[:, :, 10].exp() + 0.35, 0.5 * tok[:, :, 11].exp() + 0.35
    dx, dy = px - x, py - y  # (B, K, H, W)
    u, v = c * dx + s * dy, -s * dx + c * dy
    m = agent_mask[:, :, None, None].float()
    occ = ((u.abs() <= half_l) & (v.abs() <= half_w)).float() * m
    feats = torch.cat([torch.ones_like(agent_tok[..., :1]), agent_tok[..., 8:10], agent_tok[..., 0:6],
                       agent_tok[..., 12:14]], -1)  # fmt: skip
    drawn = torch.einsum("bkhw,bkf->bfhw", occ, feats)
    centre = (torch.exp(-0.5 * (dx * dx + dy * dy)) * m).sum(1, keepdim=True)
    return torch.cat([drawn, centre], 1)


PIN_COND_CHANNELS = LATENT_CH + 1


@torch.no_grad()
def pin_condition(vae: SceneVAE, pin_tables: list, map_r: torch.Tensor, latent_scale: float) -> torch.Tensor:
    """(B, LATENT_CH + 1, 16, 16) latent of the pinned agents alone, and where they are.

    Each scene's pins (ego-frame rows, see :func:`prescient.models.scenario_diffusion.tokens.token_rows`)
    are drawn as a pins-only agent raster and encoded (mean) by the VAE encoder with the scene's
    map; the latent is kept within one latent cell of the pins' footprint and scaled like the
    diffusion latents; the last channel is that footprint mask. Scenes without pins get zeros.

    Why: the diffusion latent of a scene near a pinned agent is close to the latent of that agent
    alone (pasting it into a generated latent recovers 176 of 189 held-out pins). Given it as input,
    the U-Net has to learn to keep and blend it, not to invent a class-, heading- and size-exact code
    from token numbers, which it had not learned in 11 minutes of training (2 / 87 pins).
    """
    b = len(pin_tables)
    out = torch.zeros(b, PIN_COND_CHANNELS, LATENT_HW, LATENT_HW)
    has = [i for i, t in enumerate(pin_tables) if len(t)]
    if not has:
        return out
    rasters = torch.from_numpy(np.stack([G.agent_raster(pin_tables[i]) for i in has]))
    was_training = vae.training
    vae.eval()
    mu, _ = vae.encode(rasters, map_r[has])
    vae.train(was_training)
    m16 = (F.max_pool2d(rasters[:, -1:], 4) > 0).float()  # the footprint channel
    near = F.max_pool2d(m16, 3, stride=1, padding=1)
    out[has] = torch.cat([mu * latent_scale * near, m16], 1)
    return out


class LatentUNet(nn.Module):
    """Two-level U-Net over the (4 + N_MAP, 16, 16) latent-plus-map, cross-attending to tokens.

    With ``cfg.pin_raster`` the agent tokens are also drawn (:func:`rasterize_tokens`) and a
    stride-4 convolution adds them to the first feature map.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w, d = cfg.unet_width, cfg.token_width
        te = 4 * w
        self.temb = nn.Sequential(nn.Linear(w, te), nn.SiLU(), nn.Linear(te, te))
        self.tokens = TokenEncoder(d)
        self.pin_latent = cfg.pin_latent
        self.cin = nn.Conv2d(
            LATENT_CH + N_MAP + (PIN_COND_CHANNELS if cfg.pin_latent else 0), w, 3, padding=1
        )
        self.r1, self.a1 = Res(w, w, te), CrossAttn(w, d, cfg.n_heads)
        self.down = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.r2, self.a2 = Res(2 * w, 2 * w, te), CrossAttn(2 * w, d, cfg.n_heads)
        self.mid, self.am = Res(2 * w, 2 * w, te), CrossAttn(2 * w, d, cfg.n_heads)
        self.r3 = Res(4 * w, 2 * w, te)
        self.r4, self.a4 = Res(3 * w, w, te), CrossAttn(w, d, cfg.n_heads)
        self.out = nn.Sequential(_gn(w), nn.SiLU(), nn.Conv2d(w, LATENT_CH, 3, padding=1))
        self.pin = (
            nn.Sequential(
                nn.Conv2d(PIN_CHANNELS, w, 3, stride=2, padding=1),
                nn.SiLU(),
                nn.Conv2d(w, w, 3, stride=2, padding=1),
            )  # fmt: skip
            if cfg.pin_raster
            else None
        )
        self.w = w

    def forward(self, z: torch.Tensor, t: torch.Tensor, map16: torch.Tensor, agent_tok: torch.Tensor,
                agent_mask: torch.Tensor, glob: torch.Tensor, glob_mask: torch.Tensor,
                pin_cond: torch.Tensor | None = None, drawn: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Predicted noise (B, 4, 16, 16). ``pin_cond``: :func:`pin_condition` (None = no pins);
        ``drawn``: :func:`rasterize_tokens` of the agent tokens, if already computed (a sampler's
        tokens do not change between steps)."""
        te = self.temb(timestep_embedding(t, self.w))
        tok, pad = self.tokens(agent_tok, agent_mask, glob, glob_mask)
        x = [z, map16]
        if self.pin_latent:
            x.append(
                torch.zeros(z.shape[0], PIN_COND_CHANNELS, *z.shape[2:]) if pin_cond is None else pin_cond
            )
        h0 = self.cin(torch.cat(x, 1))
        if self.pin is not None:
            h0 = h0 + self.pin(rasterize_tokens(agent_tok, agent_mask) if drawn is None else drawn)
        h1 = self.a1(self.r1(h0, te), tok, pad)
        h2 = self.a2(self.r2(self.down(h1), te), tok, pad)
        h = self.am(self.mid(h2, te), tok, pad)
        h = self.r3(torch.cat([h, h2], 1), te)
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        h = self.a4(self.r4(torch.cat([h, h1], 1), te), tok, pad)
        return self.out(h)


def cosine_alpha_bar(n_steps: int) -> torch.Tensor:
    """(T,) cumulative alpha of the cosine schedule (Nichol & Dhariwal 2021)."""
    s = 0.008
    t = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    ab = (f / f[0])[1:]
    return ab.clamp(1e-5, 1.0).float()


@torch.no_grad()
def ddim_sample(unet: LatentUNet, alpha_bar: torch.Tensor, map16: torch.Tensor, agent_tok: torch.Tensor,
                agent_mask: torch.Tensor, glob: torch.Tensor, glob_mask: torch.Tensor, n_steps: int = 25,
                guidance: float = 1.0, generator: torch.Generator | None = None,
                pin_cond: torch.Tensor | None = None, inpaint_pins: bool = False) -> torch.Tensor:  # fmt: skip
    """Deterministic DDIM (eta = 0) with optional classifier-free guidance; returns latents (B, 4, 16, 16).

    With ``guidance != 1`` the unconditional branch drops every token (global, agents and ``pin_cond``).
    With ``inpaint_pins`` (needs ``pin_cond``) every step's predicted clean latent is replaced, within
    one latent cell of the pins, by the pins' own latent, and the rest of the scene is denoised around
    it (inpainting by replacement of the x0 estimate): a hard constraint on top of the learned one.
    """
    drawn = rasterize_tokens(agent_tok, agent_mask) if unet.pin is not None else None
    near = known = None
    if inpaint_pins and pin_cond is not None:
        near = F.max_pool2d(pin_cond[:, LATENT_CH:], 3, stride=1, padding=1)
        known = pin_cond[:, :LATENT_CH]
    b = map16.shape[0]
    T = len(alpha_bar)
    ts = torch.linspace(T - 1, 0, n_steps).round().long()
    z = torch.randn(b, LATENT_CH, LATENT_HW, LATENT_HW, generator=generator)
    for i, t in enumerate(ts):
        tt = torch.full((b,), int(t), dtype=torch.long)
        if guidance != 1.0:
            zz = torch.cat([z, z])
            eps_all = unet(zz, torch.cat([tt, tt]), torch.cat([map16, map16]), torch.cat([agent_tok, agent_tok]),
                           torch.cat([agent_mask, torch.zeros_like(agent_mask)]), torch.cat([glob, glob]),
                           torch.cat([glob_mask, torch.zeros_like(glob_mask)]),
                           None if pin_cond is None else torch.cat([pin_cond, torch.zeros_like(pin_cond)]),
                           None if drawn is None else torch.cat([drawn, torch.zeros_like(drawn)]))  # fmt: skip
            eps_c, eps_u = eps_all.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        else:
            eps = unet(z, tt, map16, agent_tok, agent_mask, glob, glob_mask, pin_cond, drawn)
        ab = alpha_bar[t]
        x0 = (z - (1 - ab).sqrt() * eps) / ab.sqrt()
        x0 = x0.clamp(-6.0, 6.0)
        if near is not None:
            x0 = x0 * (1.0 - near) + known * near
        ab_prev = alpha_bar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
        z = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    return z


def config_dict(cfg: ModelConfig) -> dict:
    """JSON-able config."""
    return asdict(cfg)
