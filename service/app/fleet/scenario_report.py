"""The report of ``prescient fleet scenarios``: the ranked table, the top scenes' pictures and the
command that replays each scene alone (:mod:`prescient.service.app.fleet.scenarios`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prescient.service.app.fleet.scenario_score import HARD_BRAKE_MPS2, NEAR_MISS_M
from prescient.service.app.fleet.store import write_atomic, write_jsonl_atomic

if TYPE_CHECKING:
    from prescient.service.app.fleet.scenarios import CampaignJob

SIM_SEED = 0  # the default --seed of `prescient sim|up`, so the replay command reproduces the run
TOP_PICTURES = 3
RECORDS_DIR = "records"


def replay_command(out_dir: Path, index: int, seconds: float) -> str:
    """The command that runs scene ``index`` alone through the live stack."""
    return f"prescient up --from-scenario {out_dir / 'scenes.json'}#{index} --duration {seconds:g}"


def draw_moment(npz: Path, map_name: str, title: str, out_png: Path) -> Path:
    """The scene at its worst moment: map, true boxes, predicted modes, the ego and its candidate plans."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prescient.service.app.summary import VIEW_HALF_M, _box, _draw_map
    from prescient.sim_sensors.maps import build_map_data

    d = np.load(npz, allow_pickle=False)
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    _draw_map(ax, build_map_data(map_name, SIM_SEED).vector_map)
    if "gt_xy" in d:
        for xy, size, yaw in zip(d["gt_xy"], d["gt_size"], d["gt_yaw"]):
            _box(ax, xy, size[0], size[1], yaw, "#555555")
    if "pred_traj" in d:
        cmap = plt.get_cmap("tab10")
        for i, (traj, probs) in enumerate(zip(d["pred_traj"], d["pred_probs"])):
            for k in np.nonzero(probs >= 0.05)[0]:
                ax.plot(
                    traj[k, :, 0],
                    traj[k, :, 1],
                    color=cmap(i % 10),
                    lw=0.8 + 2.5 * probs[k],
                    alpha=0.35 + 0.65 * probs[k],
                )
        for j, plan in enumerate(d["plans"]):
            ax.plot(
                plan[:, 0],
                plan[:, 1],
                "r-" if j == int(d["chosen"]) else "r:",
                lw=2.0 if j == int(d["chosen"]) else 0.8,
            )
    centre = d["ego_pose"][:2] if "ego_pose" in d else np.zeros(2)
    if "ego_pose" in d:
        from prescient.sim_sensors.config import EGO_CENTER_FROM_REAR_AXLE_M

        x, y, yaw = d["ego_pose"]
        ctr = (x + EGO_CENTER_FROM_REAR_AXLE_M * np.cos(yaw), y + EGO_CENTER_FROM_REAR_AXLE_M * np.sin(yaw))
        _box(ax, ctr, d["ego_size"][0], d["ego_size"][1], yaw, "red")
    half = VIEW_HALF_M / 2
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal")
    ax.set_title(
        f"{title}\ngrey: true boxes; coloured: predicted modes; red: ego, its plan (solid: chosen)",
        fontsize=9,
    )
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, bbox_inches="tight")
    plt.close(fig)
    return out_png


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, float) else str(v)


def campaign_command(job: CampaignJob, no_model: bool) -> str:
    """The command line that reproduces ``job`` (for the report)."""
    parts = ["prescient fleet scenarios", f"--n {job.n}", f"--maps {','.join(job.maps)}", f"--seconds {job.seconds:g}",
             f"--out {job.out_dir}", f"--seed {job.seed}", f"--steps {job.steps}", f"--batch {job.batch}"]  # fmt: skip
    if job.tokens is not None:
        parts.append(f"--tokens {job.tokens}")
    parts.append("--no-model" if no_model else f"--model {job.model}" if job.model else "")
    return " ".join(p for p in parts if p)


def write_report(ranked: list[dict[str, Any]], job: CampaignJob, command: str) -> None:
    """``DIR/scenes.jsonl`` (index order) and ``DIR/report.md`` (worst first, top-3 pictures), atomically."""
    out = job.out_dir
    rows = [{**r, "replay": replay_command(out, r["index"], job.seconds)} for r in ranked]
    write_jsonl_atomic(out / "scenes.jsonl", sorted(rows, key=lambda r: r["index"]))
    ok = [r for r in rows if r.get("status") != "failed"]
    n_col = sum(r["safety"]["collision"] for r in ok)
    n_near = sum(r["safety"]["near_miss"] for r in ok)
    n_brake = sum(r["safety"]["hard_braking"] for r in ok)
    lines = [
        "# Scenario campaign", "", f"`{command}`", "",
        f"{len(rows)} scenes ({len(ok)} ran) on {', '.join(job.maps)}, {job.seconds:g} s each; "
        f"collisions {n_col}, near misses (< {NEAR_MISS_M:g} m) {n_near}, hard braking (> {HARD_BRAKE_MPS2:g} m/s^2) {n_brake}.",
        "", "Severity, worst first: collision (ego box overlaps a true agent box), then near miss (gap "
        f"< {NEAR_MISS_M:g} m), then the lower minimum TTC (constant velocity, 2.5 m centre distance, "
        "truth), then the larger model minFDE6 at the longest horizon scored. See "
        "`service/app/fleet/scenario_score.py`.", "",
        "| rank | scene | map | agents (placed) | collision | min gap m | min TTC s | max decel m/s^2 | minFDE6 model / cv m (h) | degraded ticks | planner stop ticks | replay |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        if r.get("status") == "failed":
            lines.append(
                f"| {r['rank']} | {r['index']} | failed: {r.get('error', '')} |||||||||| `{r['replay']}` |"
            )
            continue
        s, p = r["safety"], r["prediction"]
        fde = f"{_fmt(p.get('model_min_fde'))} / {_fmt(p.get('cv_min_fde'))} ({p.get('horizon') or '-'})"
        lines.append(
            f"| {r['rank']} | {r['index']} | {r['map']} | {r['agents']} ({r['agents_placed']}) | "
            f"{'yes' if s['collision'] else 'near miss' if s['near_miss'] else 'no'} | {_fmt(s['min_gap_m'])} | "
            f"{_fmt(s['min_ttc_s'])} | {_fmt(s['max_decel_mps2'])} | {fde} | {r['degraded_ticks']}/{r['ticks']} | "
            f"{r['planner']['stop']} | `{r['replay']}` |"
        )
    lines += ["", "## Worst scenes", ""]
    for r in ok[:TOP_PICTURES]:
        npz = out / RECORDS_DIR / f"scene_{r['index']:04d}.npz"
        lines.append(
            f"### {r['rank']}. scene {r['index']} ({r['map']}), worst moment t = {r['safety']['worst_t_s']:.1f} s"
        )
        lines += ["", f"`{r['replay']}`", ""]
        try:
            png = draw_moment(npz, r["map"], f"scene {r['index']} at t = {r['safety']['worst_t_s']:.1f} s, "
                              f"min gap {_fmt(r['safety']['min_gap_m'])} m", out / f"scene_{r['index']:04d}.png")  # fmt: skip
            lines += [f"![scene {r['index']}]({png.name})", ""]
        except (ImportError, OSError, ValueError, KeyError) as e:
            lines += [f"(no picture: {e})", ""]
    write_atomic(out / "report.md", ("\n".join(lines) + "\n").encode())
