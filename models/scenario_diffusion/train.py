"""Training: the scene VAE first (checked by box recall on held-out scenes), then the latent diffusion.

Run (about 30 min on 2 shared CPU cores)::

    python -m prescient.models.scenario_diffusion.data --runs-per-map 110 --seed0 1000 --out runs/scenario_diffusion/train.npz
    python -m prescient.models.scenario_diffusion.data --runs-per-map 15 --seed0 900000 --pseudo-egos 1 \
        --out runs/scenario_diffusion/heldout.npz
    python -m prescient.models.scenario_diffusion.train --train runs/scenario_diffusion/train.npz \
        --heldout runs/scenario_diffusion/heldout.npz --out models/scenario_diffusion/weights.pt

Weights are saved as plain tensors and JSON-able values (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from prescient.models.scenario_diffusion import grid as G
from prescient.models.scenario_diffusion.data import MapRaster
from prescient.models.scenario_diffusion.model import (
    LatentUNet,
    ModelConfig,
    SceneVAE,
    config_dict,
    cosine_alpha_bar,
    grid_probabilities,
    pin_condition,
    vae_loss,
)
from prescient.models.scenario_diffusion.tokens import (
    GLOBAL_DIM,
    MAX_AGENT_TOKENS,
    TOKEN_DIM,
    agent_tokens,
    global_token,
    pin_random_agents,
    token_rows,
)
from prescient.sim_sensors.maps import SCENARIOS

log = logging.getLogger(__name__)


class SceneSet:
    """Scenes of an ``.npz`` written by :mod:`prescient.models.scenario_diffusion.data`, with cached inputs."""

    def __init__(self, path: str | Path | None = None, arrays: dict[str, np.ndarray] | None = None,
                 map_raster: MapRaster | None = None) -> None:  # fmt: skip
        d = dict(np.load(path)) if path is not None else dict(arrays or {})
        self.agents, self.offsets = d["agents"], d["offsets"]
        self.ego_pose, self.map_index = d["ego_pose"], d["map_index"]
        self.ego_speed_mps = d["ego_speed_mps"]
        self.mr = map_raster or MapRaster()
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def table(self, i: int) -> np.ndarray:
        """(N, AGENT_COLS) ego-frame agents of scene i, inside the window."""
        t = self.agents[self.offsets[i] : self.offsets[i + 1]]
        return t[G.in_window(t[:, G.A_X : G.A_Y + 1])]

    def map_raster(self, i: int) -> np.ndarray:
        """(N_MAP, H, W) float32 map raster of scene i (cached as float16)."""
        m = self._maps.get(i)
        if m is None:
            m = self._maps[i] = self.mr(SCENARIOS[int(self.map_index[i])], self.ego_pose[i]).astype(
                np.float16
            )
        return m.astype(np.float32)

    def batch(self, idx: np.ndarray, rng: np.random.Generator | None = None,
              p_turn: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """(agent raster (B, GRID_CHANNELS + 1, H, W), target grid (B, GRID_CHANNELS, H, W), map (B, N_MAP, H, W)).

        With ``rng`` and ``p_turn`` > 0 each agent is turned by a random angle with probability
        ``p_turn`` (see :func:`turn_agents`).
        """
        rasters, maps = [], []
        for i in idx:
            t = self.table(int(i))
            if rng is not None and p_turn > 0:
                t = turn_agents(t, rng, p_turn)
            rasters.append(G.agent_raster(t))
            maps.append(self.map_raster(int(i)))
        x = torch.from_numpy(np.stack(rasters))
        return x, x[:, : G.GRID_CHANNELS], torch.from_numpy(np.stack(maps))


def turn_agents(t: np.ndarray, rng: np.random.Generator, p_turn: float) -> np.ndarray:
    """Copy of an agent table with each agent turned in place (heading and trajectory deltas) by a
    uniform random angle with probability ``p_turn``.

    Why: on lanes the map alone predicts an agent's heading, so the decoder learned to read heading
    from the map rather than the latent; in a junction box it then decoded every pinned heading as
    about 0.54 rad. Turned agents make the latent the only source of heading.
    """
    t = t.copy()
    turn = rng.random(len(t)) < p_turn
    a = rng.uniform(-np.pi, np.pi, int(turn.sum()))
    c, s = np.cos(a), np.sin(a)
    t[turn, G.A_YAW] = (t[turn, G.A_YAW] + a + np.pi) % (2 * np.pi) - np.pi
    for col in (G.A_PDX, G.A_FDX):
        dx, dy = t[turn, col].copy(), t[turn, col + 1].copy()
        t[turn, col], t[turn, col + 1] = c * dx - s * dy, s * dx + c * dy
    return t


def match_agents(gt: np.ndarray, pred: np.ndarray, max_dist_m: float, max_dyaw_rad: float | None,
                 same_class: bool = True) -> np.ndarray:  # fmt: skip
    """Hungarian matching (scipy) of ego-frame agent rows; returns (M, 2) index pairs (gt, pred) within gates.

    Heading is gated only for moving-box classes (car, truck, bus, cyclist) when ``max_dyaw_rad`` is set.
    """
    if len(gt) == 0 or len(pred) == 0:
        return np.zeros((0, 2), np.int64)
    d = np.hypot(gt[:, None, G.A_X] - pred[None, :, G.A_X], gt[:, None, G.A_Y] - pred[None, :, G.A_Y])
    ok = d <= max_dist_m
    if max_dyaw_rad is not None:
        dyaw = np.abs((gt[:, None, G.A_YAW] - pred[None, :, G.A_YAW] + np.pi) % (2 * np.pi) - np.pi)
        gated = np.isin(gt[:, G.A_CLS], [1, 2, 3, 5])[:, None]
        ok &= ~gated | (dyaw <= max_dyaw_rad)
    if same_class:
        ok &= gt[:, None, G.A_CLS] == pred[None, :, G.A_CLS]
    cost = np.where(ok, d, 1e6)
    r, c = linear_sum_assignment(cost)
    keep = ok[r, c]
    return np.stack([r[keep], c[keep]], 1)


@torch.no_grad()
def vae_recall(vae: SceneVAE, ds: SceneSet, threshold: float = 0.5, batch: int = 64) -> dict[str, float]:
    """Box recall / precision of encode(mu) -> decode on every scene of ``ds``.

    A ground-truth agent counts as recovered when a decoded agent of the same class has its centre
    within 1.0 m and (vehicles, cyclists) its heading within 0.3 rad.
    """
    vae.eval()
    n_gt = n_pred = n_hit = 0
    dyaw, dsize = [], []
    for s in range(0, len(ds), batch):
        idx = np.arange(s, min(len(ds), s + batch))
        x, _, m = ds.batch(idx)
        mu, _ = vae.encode(x, m)
        out = grid_probabilities(vae.decode(mu, m)).numpy()
        for j, i in enumerate(idx):
            gt = ds.table(int(i))
            pred = G.decode_grid(out[j], threshold)
            pairs = match_agents(gt, pred, 1.0, 0.3)
            n_gt, n_pred, n_hit = n_gt + len(gt), n_pred + len(pred), n_hit + len(pairs)
            if len(pairs):
                a, b = gt[pairs[:, 0]], pred[pairs[:, 1]]
                dyaw += list(np.abs((a[:, G.A_YAW] - b[:, G.A_YAW] + np.pi) % (2 * np.pi) - np.pi))
                dsize += list(np.abs(a[:, G.A_L] - b[:, G.A_L]))
    return {
        "recall": n_hit / max(n_gt, 1),
        "precision": n_hit / max(n_pred, 1),
        "n_gt": n_gt,
        "n_pred": n_pred,
        "median_heading_err_rad": float(np.median(dyaw)) if dyaw else float("nan"),
        "median_length_err_m": float(np.median(dsize)) if dsize else float("nan"),
    }


def train_vae(vae: SceneVAE, ds: SceneSet, minutes: float, seed: int, batch: int = 32, lr: float = 2e-3,
              kl_weight: float = 1e-3, max_steps: int | None = None, p_turn: float = 0.0) -> int:  # fmt: skip
    """Train the VAE for ``minutes`` of wall time (or ``max_steps``); returns the number of steps.

    ``p_turn``: probability that an agent is turned at random (:func:`turn_agents`)."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=1e-4)
    t0 = time.monotonic()
    step = 0
    vae.train()
    while (max_steps is None or step < max_steps) and time.monotonic() - t0 < minutes * 60:
        idx = rng.integers(0, len(ds), batch)
        x, g, m = ds.batch(idx, rng, p_turn)
        mu, logvar = vae.encode(x, m)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        loss, parts = vae_loss(vae.decode(z, m), g, mu, logvar, kl_weight)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        frac = (time.monotonic() - t0) / (minutes * 60)
        for pg in opt.param_groups:
            pg["lr"] = lr * (0.1 if frac > 0.85 else 1.0)
        opt.step()
        if step % 100 == 0:
            log.info("vae step %d %.0fs loss %.4f %s", step, time.monotonic() - t0, float(loss.detach()),
                     {k: round(v, 4) for k, v in parts.items()})  # fmt: skip
        step += 1
    return step


@torch.no_grad()
def encode_all(vae: SceneVAE, ds: SceneSet, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent mu (N, 4, 16, 16), map at latent resolution (N, N_MAP, 16, 16)) of every scene."""
    vae.eval()
    zs, ms = [], []
    for s in range(0, len(ds), batch):
        x, _, m = ds.batch(np.arange(s, min(len(ds), s + batch)))
        mu, _ = vae.encode(x, m)
        zs.append(mu)
        ms.append(F.avg_pool2d(m, 4))
    return torch.cat(zs), torch.cat(ms)


def sample_tokens(ds: SceneSet, idx: np.ndarray, rng: np.random.Generator, p_drop_global: float = 0.2,
                  p_no_agents: float = 0.25, max_pins: int = 6) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """Training tokens: a random subset (1..max_pins) of each scene's agents pinned (none with
    probability ``p_no_agents``, the unconditional branch of guidance), density token (dropped with
    probability ``p_drop_global``)."""
    b = len(idx)
    tok = np.zeros((b, MAX_AGENT_TOKENS, TOKEN_DIM), np.float32)
    mask = np.zeros((b, MAX_AGENT_TOKENS), bool)
    glob = np.zeros((b, GLOBAL_DIM), np.float32)
    gmask = np.ones(b, bool)
    for j, i in enumerate(idx):
        t = ds.table(int(i))
        glob[j] = global_token(len(t))
        gmask[j] = rng.random() >= p_drop_global
        if len(t) and rng.random() >= p_no_agents:
            k = int(rng.integers(1, min(max_pins, MAX_AGENT_TOKENS, len(t)) + 1))
            pick = rng.choice(len(t), k, replace=False)
            tok[j, :k] = agent_tokens(t[pick])
            mask[j, :k] = True
    return torch.from_numpy(tok), torch.from_numpy(mask), torch.from_numpy(glob), torch.from_numpy(gmask)


@torch.no_grad()
def pin_compliance(vae: SceneVAE, unet: LatentUNet, latent_scale: float, ds: SceneSet, n_scenes: int = 96,
                   seed: int = 0, n_steps: int = 25, n_diffusion: int = 1000) -> dict[str, float]:  # fmt: skip
    """Pin 1-3 agents of the first ``n_scenes`` scenes of ``ds``, sample (DDIM, no guidance), decode,
    and count pins answered by a generated agent of their class within 2.2 m and 0.2 rad."""
    from prescient.models.scenario_diffusion.generate import match_pins
    from prescient.models.scenario_diffusion.model import ddim_sample

    was_training = unet.training
    unet.eval()
    vae.eval()
    idx = np.arange(min(n_scenes, len(ds)))
    pins, tok, mask = pin_random_agents([ds.table(int(i)) for i in idx], np.random.default_rng(seed))
    found = total = 0
    for s0 in range(0, len(idx), 32):
        sl = slice(s0, min(len(idx), s0 + 32))
        m = torch.from_numpy(np.stack([ds.map_raster(int(i)) for i in idx[sl]]))
        b = m.shape[0]
        gen = torch.Generator().manual_seed(seed + s0)
        pc = pin_condition(vae, [token_rows(t[k]) for t, k in zip(tok[sl], mask[sl])], m, latent_scale)
        zz = ddim_sample(unet, cosine_alpha_bar(n_diffusion), F.avg_pool2d(m, 4), torch.from_numpy(tok[sl]),
                         torch.from_numpy(mask[sl]), torch.zeros(b, GLOBAL_DIM), torch.zeros(b, dtype=torch.bool),
                         n_steps=n_steps, generator=gen, pin_cond=pc if unet.pin_latent else None)  # fmt: skip
        out = grid_probabilities(vae.decode(zz / latent_scale, m)).numpy()
        for o, p in zip(out, pins[sl]):
            hit = match_pins(p, G.decode_grid(o, 0.5))
            found, total = found + int((hit >= 0).sum()), total + len(p)
    unet.train(was_training)
    return {"found": found, "pins": total, "rate": found / max(total, 1)}


def train_diffusion(unet: LatentUNet, ds: SceneSet, z: torch.Tensor, m16: torch.Tensor, minutes: float,
                    seed: int, batch: int = 64, lr: float = 1e-3, max_steps: int | None = None,
                    n_steps: int = 1000, on_checkpoint=None, checkpoint_minutes: float = 0.0,
                    vae: SceneVAE | None = None, latent_scale: float = 1.0) -> int:  # fmt: skip
    """Epsilon-prediction training on the (scaled) latents; returns the number of steps.

    A U-Net with ``pin_latent`` needs the (frozen) ``vae`` and the ``latent_scale`` of ``z`` to build
    its pin condition from the sampled tokens.

    ``on_checkpoint(step)`` is called every ``checkpoint_minutes`` of wall time (0 = never), e.g. to
    save weights and measure pin compliance, so a long run can be stopped and still be used.
    """
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    ab = cosine_alpha_bar(n_steps)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-4)
    t0 = time.monotonic()
    step = 0
    next_ckpt = checkpoint_minutes * 60
    unet.train()
    while (max_steps is None or step < max_steps) and time.monotonic() - t0 < minutes * 60:
        if on_checkpoint is not None and checkpoint_minutes > 0 and time.monotonic() - t0 >= next_ckpt:
            on_checkpoint(step)
            next_ckpt += checkpoint_minutes * 60
        idx = rng.integers(0, len(ds), batch)
        tok, mask, glob, gmask = sample_tokens(ds, idx, rng)
        x0 = z[idx]
        t = torch.randint(0, n_steps, (batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = ab[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        pc = None
        if unet.pin_latent:
            if vae is None:
                raise ValueError("a U-Net with pin_latent needs the VAE to build its pin condition")
            maps = torch.from_numpy(np.stack([ds.map_raster(int(i)) for i in idx]))
            pc = pin_condition(vae, [token_rows(tk[k]) for tk, k in zip(tok.numpy(), mask.numpy())], maps,
                               latent_scale)  # fmt: skip
        loss = F.mse_loss(unet(xt, t, m16[idx], tok, mask, glob, gmask, pc), eps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        frac = (time.monotonic() - t0) / (minutes * 60)
        for pg in opt.param_groups:
            pg["lr"] = lr * (0.2 if frac > 0.8 else 1.0)
        opt.step()
        if step % 200 == 0:
            log.info("diffusion step %d %.0fs loss %.4f", step, time.monotonic() - t0, float(loss.detach()))
        step += 1
    return step


def save_weights(path: str | Path, cfg: ModelConfig, vae: SceneVAE, unet: LatentUNet, latent_scale: float,
                 info: dict) -> Path:  # fmt: skip
    """Write the shipped weights: tensors plus a JSON string of config and training info."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "vae": {k: v.detach().clone() for k, v in vae.state_dict().items()},
            "unet": {k: v.detach().clone() for k, v in unet.state_dict().items()},
            "latent_scale": torch.tensor(latent_scale),
            "info_json": json.dumps({"config": config_dict(cfg), **info}),
        },
        p,
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Train both stages; prints the held-out VAE recall."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vae-minutes", type=float, default=12.0)
    ap.add_argument("--diffusion-minutes", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--vae-checkpoint",
        help="load this VAE instead of training one: the .vae.pt a run wrote, or a full weights file",
    )
    ap.add_argument("--vae-init", help="start VAE training from this state (continue a run)")
    ap.add_argument("--unet-init", help="start diffusion training from the U-Net of this weights file")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--turn-p", type=float, default=0.0,
                    help="VAE training: probability an agent is turned at random (heading from the latent, not the map)")  # fmt: skip
    ap.add_argument("--checkpoint-minutes", type=float, default=10.0,
                    help="save weights and print held-out pin compliance this often")  # fmt: skip
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = ModelConfig()
    tr, ho = SceneSet(a.train), SceneSet(a.heldout)
    log.info("train %d scenes, held-out %d scenes", len(tr), len(ho))
    vae = SceneVAE(cfg)
    steps_v = 0
    if a.vae_checkpoint:
        state = torch.load(a.vae_checkpoint, weights_only=True)
        vae.load_state_dict(state["vae"] if "vae" in state else state)
    else:
        if a.vae_init:
            vae.load_state_dict(torch.load(a.vae_init, weights_only=True))
        steps_v = train_vae(vae, tr, a.vae_minutes, a.seed, p_turn=a.turn_p)
        torch.save(vae.state_dict(), Path(a.out).with_suffix(".vae.pt"))
    rec = vae_recall(vae, ho)
    log.info("VAE held-out: %s", rec)
    print(
        f"VAE held-out box recall {rec['recall']:.4f} precision {rec['precision']:.4f} ({rec['n_gt']} agents)"
    )
    z, m16 = encode_all(vae, tr)
    scale = float(1.0 / z.std())
    unet = LatentUNet(cfg)
    if a.unet_init:
        # Non-strict: a U-Net trained before the pin raster existed lacks only ``pin.*``; one trained
        # before the pin latent has fewer input channels: those weights are copied, the new start at 0.
        state = torch.load(a.unet_init, weights_only=True)["unet"]
        w_in = unet.cin.weight.detach().clone()
        if state["cin.weight"].shape[1] < w_in.shape[1]:
            w_in.zero_()
            w_in[:, : state["cin.weight"].shape[1]] = state["cin.weight"]
            state["cin.weight"] = w_in
        missing, unexpected = unet.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("pin.") for k in missing):
            raise SystemExit(
                f"--unet-init {a.unet_init}: does not fit (missing {missing}, unexpected {unexpected})"
            )
        log.info(
            "U-Net initialised from %s (new: %s)", a.unet_init, sorted({k.split(".")[0] for k in missing})
        )
    info = {"vae_steps": steps_v, "vae_heldout": rec, "n_train_scenes": len(tr), "seed": a.seed,
            "threads": a.threads}  # fmt: skip
    if a.unet_init:
        info["unet_init_info"] = {k: v for k, v in json.loads(torch.load(a.unet_init, weights_only=True)["info_json"]).items()
                                  if k != "config"}  # fmt: skip
    t_start = time.monotonic()

    def checkpoint(step: int) -> None:
        c = pin_compliance(vae, unet, scale, ho, seed=a.seed)
        save_weights(a.out, cfg, vae, unet, scale, {**info, "diffusion_steps_trained": step,
                                                    "diffusion_minutes": (time.monotonic() - t_start) / 60,
                                                    "heldout_pin_compliance_96": c})  # fmt: skip
        log.info("checkpoint at step %d: held-out pin compliance %d/%d = %.3f (weights saved)",
                 step, c["found"], c["pins"], c["rate"])  # fmt: skip

    steps_d = train_diffusion(unet, tr, z * scale, m16, a.diffusion_minutes, a.seed, on_checkpoint=checkpoint,
                              checkpoint_minutes=a.checkpoint_minutes, vae=vae, latent_scale=scale)  # fmt: skip
    info.update(diffusion_steps_trained=steps_d, diffusion_minutes=(time.monotonic() - t_start) / 60)
    c = pin_compliance(vae, unet, scale, ho, seed=a.seed)
    print(f"held-out pin compliance (96 scenes, 1-3 pins each): {c['found']}/{c['pins']} = {c['rate']:.3f}")
    info.update(heldout_pin_compliance_96=c)
    p = save_weights(a.out, cfg, vae, unet, scale, info)
    print(f"weights written to {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
