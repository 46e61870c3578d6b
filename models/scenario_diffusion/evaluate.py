"""Evaluation against held-out simulated scenes (``prescient scenarios eval``, ``benchmarks/bench_scenarios.py``).

Held-out scenes come from simulator runs whose seeds (default from 900000) never appear in
training (seeds 1000..1109). Rows compared:

* ``heldout_b``: a second held-out draw (other seeds): the floor any method can reach;
* ``spawner``: the simulator's own initial spawn (same maps and agent targets, t = 0);
* ``diffusion``: generated on the held-out ego poses with no tokens;
* ``diffusion+density``: with the held-out scene's agent count as the global token.

Token compliance: 1-3 agents of each held-out scene pinned; a pin is found when a generated agent
of its class lies within 2.2 m and 0.2 rad (Hungarian matching, scipy).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from prescient.models.scenario_diffusion import grid as G
from prescient.models.scenario_diffusion.data import (
    MapRaster,
    agent_table,
    run_specs,
    simulate_scenes,
    spawner_scene,
)
from prescient.models.scenario_diffusion.generate import ScenarioGenerator, match_pins
from prescient.models.scenario_diffusion.metrics import mmd_table, scene_stats
from prescient.models.scenario_diffusion.tokens import MAX_AGENT_TOKENS, TOKEN_DIM, pin_random_agents
from prescient.sim_sensors.maps import build_map_data

log = logging.getLogger(__name__)


def _window(t: np.ndarray) -> np.ndarray:
    return t[G.in_window(t[:, G.A_X : G.A_Y + 1])]


def heldout(runs_per_map: int, seed0: int, n_times: int = 2) -> tuple[list, list[np.ndarray], list]:
    """(scenes, ego-frame tables, run specs per scene) of real-ego held-out scenes."""
    scenes, tables, specs = [], [], []
    for spec in run_specs(runs_per_map, seed0, n_times=n_times, pseudo_egos=0):
        for s in simulate_scenes(spec):
            scenes.append(s)
            tables.append(_window(agent_table(s)))
            specs.append(spec)
    return scenes, tables, specs


def evaluate(gen: ScenarioGenerator, runs_per_map: int = 6, seed0: int = 900000, n_steps: int = 25,
             guidance: float = 1.0, seed: int = 0, batch: int = 32, inpaint_pins: bool = True) -> dict:  # fmt: skip
    """Run the whole evaluation; returns a JSON-able dict (see the module docstring).

    Pinned rows use ``inpaint_pins``; compliance is also reported with the learned conditioning
    alone (``compliance_learned_only``).
    """
    t_start = time.perf_counter()
    mr = MapRaster()
    ref_scenes, ref, specs = heldout(runs_per_map, seed0)
    b_scenes, ref_b, _ = heldout(runs_per_map, seed0 + 5000)
    b_maps = [mr(s.map_name, s.ego_pose) for s in b_scenes]
    maps = np.stack([mr(s.map_name, s.ego_pose) for s in ref_scenes])
    poses = [s.ego_pose for s in ref_scenes]
    mds_by = {m: build_map_data(m) for m in {s.map_name for s in ref_scenes}}
    mds = [mds_by[s.map_name] for s in ref_scenes]
    n = len(ref)
    log.info("eval: %d held-out scenes", n)

    base_scenes = [spawner_scene(sp.map_name, sp.seed + 50000, sp.n_agents) for sp in specs]
    base = [_window(agent_table(s)) for s in base_scenes]
    base_maps = [mr(s.map_name, s.ego_pose) for s in base_scenes]  # the spawner's ego is its own

    no_tok = np.zeros((n, MAX_AGENT_TOKENS, TOKEN_DIM), np.float32)
    no_mask = np.zeros((n, MAX_AGENT_TOKENS), bool)
    counts = np.array([len(t) for t in ref], np.float64)

    def run(tokens: np.ndarray, mask: np.ndarray, density: np.ndarray | None, s: int,
            inpaint: bool = inpaint_pins) -> tuple[list, float]:  # fmt: skip
        out: list[np.ndarray] = []
        t0 = time.perf_counter()
        for b0 in range(0, n, batch):
            sl = slice(b0, min(n, b0 + batch))
            out += gen.generate_tables(maps[sl], tokens[sl], mask[sl], None if density is None else density[sl],
                                       s + b0, n_steps, guidance, inpaint_pins=inpaint)  # fmt: skip
        return out, (time.perf_counter() - t0) / n

    uncond, t_uncond = run(no_tok, no_mask, None, seed)
    dens, t_dens = run(no_tok, no_mask, counts, seed + 1)

    # Token compliance: pin 1-3 held-out agents.
    pins, tok, mask = pin_random_agents(ref, np.random.default_rng(seed))
    pinned, t_pin = run(tok, mask, None, seed + 2)
    found = [match_pins(p, g[:, : G.AGENT_COLS]) for p, g in zip(pins, pinned)]
    learned, _ = run(tok, mask, None, seed + 2, inpaint=False)
    n_learned = sum(int((match_pins(p, g[:, : G.AGENT_COLS]) >= 0).sum()) for p, g in zip(pins, learned))
    pinned_dens, _ = run(tok, mask, counts, seed + 5)
    n_pins = sum(len(p) for p in pins)
    n_found = sum(int((f >= 0).sum()) for f in found)
    by_class: dict[str, list[int]] = {}
    for p, f in zip(pins, found):
        for c, ok in zip(p[:, G.A_CLS].astype(int), f >= 0):
            by_class.setdefault(str(c), [0, 0])
            by_class[str(c)][0] += int(ok)
            by_class[str(c)][1] += 1
    extra = [len(g) - int((f >= 0).sum()) for g, f in zip(pinned, found)]

    # Density sweep on the same poses: without agent tokens, and with the same pins (does the
    # density token still set how many agents are generated around the pinned ones?).
    sweep, pinned_sweep = {}, {}
    for d in (5.0, 15.0, 30.0):
        tabs, _ = run(no_tok, no_mask, np.full(n, d), seed + 3)
        sweep[str(int(d))] = float(np.mean([len(t) for t in tabs]))
        tabs, _ = run(tok, mask, np.full(n, d), seed + 4)
        hits = [match_pins(p, g[:, : G.AGENT_COLS]) for p, g in zip(pins, tabs)]
        pinned_sweep[str(int(d))] = {
            "mean_extra_agents": float(np.mean([len(g) - int((h >= 0).sum()) for g, h in zip(tabs, hits)])),
            "compliance": sum(int((h >= 0).sum()) for h in hits) / max(n_pins, 1),
        }

    def row(tables: list[np.ndarray], tmaps, tposes, tmds, paired_counts: bool = True) -> dict:
        r = {f"mmd_{k}": v for k, v in mmd_table(tables, ref, seed=seed).items()}
        c = np.array([len(t) for t in tables], np.float64)
        r["count_mae"] = float(np.mean(np.abs(c - counts))) if paired_counts else float("nan")
        r["count_mean"] = float(c.mean())
        r.update(scene_stats(tables, tmaps, tposes, tmds))
        return r

    rows = {
        "heldout_b": row(
            ref_b, b_maps, [s.ego_pose for s in b_scenes], [mds_by[s.map_name] for s in b_scenes]
        ),
        "spawner": row(base, base_maps, [s.ego_pose for s in base_scenes], mds),
        "diffusion": row(uncond, list(maps), poses, mds),
        "diffusion+density": row(dens, list(maps), poses, mds),
        "diffusion+density+pins": row(pinned_dens, list(maps), poses, mds),
    }
    rows["heldout_b"]["count_mae"] = float("nan")  # different scenes: not paired
    ref_row = scene_stats(ref, list(maps), poses, mds)
    ref_row["count_mean"] = float(counts.mean())
    return {
        "n_heldout_scenes": n,
        "ddim_steps": n_steps,
        "guidance": guidance,
        "reference": ref_row,
        "rows": rows,
        "compliance": {
            "pins": n_pins,
            "found": n_found,
            "rate": n_found / max(n_pins, 1),
            "by_class": {k: v[0] / max(v[1], 1) for k, v in by_class.items()},
            "by_class_n": {k: v[1] for k, v in by_class.items()},
            "mean_extra_agents": float(np.mean(extra)),
            "inpaint_pins": inpaint_pins,
        },
        "compliance_learned_only": {"pins": n_pins, "found": n_learned, "rate": n_learned / max(n_pins, 1)},
        "density_sweep_mean_agents": sweep,
        "density_sweep_with_pins": pinned_sweep,
        "gen_time_per_scene_s": {"uncond": t_uncond, "density": t_dens, "pinned": t_pin},
        "eval_wall_s": time.perf_counter() - t_start,
    }


def format_report(r: dict) -> str:
    """Markdown tables of an :func:`evaluate` result."""
    cols = ["mmd_position", "mmd_heading", "mmd_speed", "mmd_size", "count_mae", "count_mean",
            "vehicles_on_drivable", "lane_heading_err_median_rad", "agents_in_collision",
            "vehicles_in_collision", "scenes_with_collision"]  # fmt: skip
    lines = [
        f"held-out scenes: {r['n_heldout_scenes']}, DDIM steps {r['ddim_steps']}, guidance {r['guidance']}",
        "",
    ]
    lines.append("| method | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    ref = r["reference"]
    lines.append("| held-out (ref) | - | - | - | - | - | " + " | ".join(
        f"{ref[c]:.3f}" for c in cols[5:]) + " |")  # fmt: skip
    for name, row in r["rows"].items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{row[c]:.4f}" if c.startswith("mmd") else f"{row[c]:.3f}" for c in cols)
            + " |"
        )
    c = r["compliance"]
    lines += ["", f"token compliance: {c['found']}/{c['pins']} = {c['rate']:.3f} (by class id: "
              + ", ".join(f"{k}: {v:.2f} (n={c['by_class_n'][k]})" for k, v in sorted(c["by_class"].items()))
              + f"); extra agents per pinned scene {c['mean_extra_agents']:.1f}; inpainting {c['inpaint_pins']}"]  # fmt: skip
    cl = r["compliance_learned_only"]
    lines.append(
        f"token compliance, learned conditioning alone (no inpainting): {cl['found']}/{cl['pins']} = {cl['rate']:.3f}"
    )
    lines.append(
        "density token -> mean agents: "
        + ", ".join(f"{k}: {v:.1f}" for k, v in r["density_sweep_mean_agents"].items())
    )
    lines.append(
        "density token with the same pins -> extra agents (compliance): "
        + ", ".join(
            f"{k}: {v['mean_extra_agents']:.1f} ({v['compliance']:.2f})"
            for k, v in r["density_sweep_with_pins"].items()
        )  # fmt: skip
    )
    t = r["gen_time_per_scene_s"]
    lines.append(f"generation time per scene (batched, 1 thread): uncond {t['uncond'] * 1e3:.1f} ms, "
                 f"density {t['density'] * 1e3:.1f} ms, pinned {t['pinned'] * 1e3:.1f} ms")  # fmt: skip
    return "\n".join(lines)
