"""README tables generated from committed result files.

Every measured figure in a generated table comes from one file under ``benchmarks/measured/``
(``<name>.json``: ``name``, ``command`` that printed it, ``commit``, ``date``, ``machine`` with
``cpu`` and ``cores``, ``source`` saying where the figures were taken from, and ``figures``); every
budget in them comes from ``benchmarks/budgets.toml``. A figure whose run recorded no commit is not
in any file; its row says "not re-measured".

``python -m prescient.benchmarks.tables`` rewrites each block between ``<!-- generated: NAME ... -->`` and
``<!-- end generated: NAME -->`` in README.md and benchmarks/README.md; ``--check`` changes
nothing and exits 1 naming each block that differs (``tests/test_docs_tables.py`` runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prescient.benchmarks import latency_tables
from prescient.benchmarks.common import budgets
from prescient.benchmarks.table_format import (  # noqa: F401 (re-exported for callers)
    BENCH_README,
    MEASURED_DIR,
    README,
    REPO,
    REQUIRED_KEYS,
    ResultFileError,
    _f,
    _lo_hi,
    load,
    machine_text,
    md_table,
    provenance,
)


def _e2e_points(r: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(p["scenario"], p["agents"]): p for p in r["figures"]["points"]}


def _miss_budget_text(b: dict[str, Any]) -> str:
    rate = b["e2e"]["max_deadline_miss_rate"]
    return "0 ticks over 100 ms" if rate == 0 else f"<= {rate:.1%} of ticks over 100 ms"


def measured_table() -> str:
    """The README summary: one row per measurement, its budget, and where it comes from."""
    b = budgets()
    e2e, model, raster = load("e2e"), load("model"), load("raster")
    tracker, quality = load("tracker_speed"), load("tracker_quality")
    cond, scen, smoke, demo = load("conditional"), load("scenarios"), load("docker_smoke"), load("demo")
    rel, rel_fix = load("reliability_352d5b0"), load("reliability_ec53f1c")
    link = "benchmarks/measured/"

    def src(*rs: dict[str, Any]) -> str:
        seen: list[str] = []
        for r in rs:
            date = r["date"] or "date not recorded"
            t = f"[`{r['commit']}`]({link}{r['name']}.json), {date}, {machine_text(r)}"
            if t not in seen:
                seen.append(t)
        return "; ".join(seen)

    rows: list[list[str]] = []
    pts = _e2e_points(e2e)
    e = b["e2e"]
    for n_at, p99, age in (
        (e["budget_agents"], e["p99_ms"], e["data_age_p99_ms"]),
        (e["max_agents"], e["p99_ms_at_max_agents"], e["data_age_p99_ms_at_max_agents"]),
    ):
        d, n = pts[("day", n_at)], pts[("night", n_at)]
        rows.append(
            [
                f"end to end (`prescient bench e2e`), {n_at} agents, {d['ticks']} ticks at 10 Hz, day / night",
                f"processing p50 {d['processing_ms']['p50']:.1f} / {n['processing_ms']['p50']:.1f} ms, "
                f"p99 {d['processing_ms']['p99']:.1f} / {n['processing_ms']['p99']:.1f} ms; data age p99 "
                f"{d['data_age_ms']['p99']:.1f} / {n['data_age_ms']['p99']:.1f} ms; {d['deadline_misses']} / "
                f"{n['deadline_misses']} ticks over 100 ms, {d['degraded_ticks']} / {n['degraded_ticks']} degraded",
                f"processing p99 <= {p99:g} ms, data age p99 <= {age:g} ms, {_miss_budget_text(b)}, "
                f"{e['max_degraded_ticks']} degraded",
                src(e2e),
            ]
        )
    infer = [p["stages_p50_ms"]["infer"] for p in pts.values()]
    infer99 = [p["stages_p99_ms"]["infer"] for p in pts.values() if p["agents"] == e["budget_agents"]]
    ort = next(x for x in model["figures"]["results"] if x["runtime"] == "onnxruntime")
    rows.append(
        [
            "model inference, onnxruntime CPU, 2 threads, 100 agents",
            f"default model ({e2e['model']}) in the stack: p50 {_lo_hi(infer, '.1f')} ms over the {len(infer)} "
            f"e2e points, p99 {_lo_hi(infer99, '.1f')} ms at {e['budget_agents']} agents; alone "
            f"(`prescient bench model --channels 58`, random weights, wider than shipped): "
            f"p50 {ort['p50_ms']:.1f} ms, p99 {ort['p99_ms']:.1f} ms",
            f"p99 <= {b['stages']['infer_ms']:g} ms",
            src(e2e, model),
        ]
    )
    main = raster["figures"]["main"]
    speedup = main["reference"]["p50_ms"] / main["fast_on_reference_scenes"]["p50_ms"]
    c, h, w = raster["figures"]["shape"]
    rows.append(
        [
            f"rasterizer (`prescient bench raster`), {c} x {h} x {w}, {raster['figures']['agents']} agents, one core",
            f"p50 {main['fast']['p50_ms']:.2f} ms, p99 {main['fast']['p99_ms']:.2f} ms; numpy reference "
            f"{main['reference']['p50_ms']:.0f} ms p50 ({speedup:.0f}x)",
            f"p99 <= {b['stages']['raster_ms']:g} ms, >= {b['raster']['min_speedup']:g}x",
            src(raster),
        ]
    )
    sp = tracker["figures"]["speed"]["sim_200_agents"]
    p99s = [x["p99"] for x in sp["wall"]]
    syn = tracker["figures"]["speed"].get("synthetic_200_in_range")
    syn_text = (
        f"; all {syn['agents']} in range: p99 {_lo_hi([x['p99'] for x in syn['wall']], '.1f')} ms"
        if syn
        else ""
    )
    rows.append(
        [
            f"tracker (`prescient bench tracker --speed-only`), simulator with {sp['agents']} agents, 16 sensors",
            f"p99 {_lo_hi(p99s, '.1f')} ms per tick ({len(p99s)} runs){syn_text}",
            f"p99 <= {b['tracker']['tick_p99_ms']:g} ms",
            src(tracker),
        ]
    )
    q = quality["figures"]["quality"]["default_day"]
    rows.append(
        [
            "tracking quality (`prescient bench tracker`), default day (agents visible to LiDAR / all in 50 m)",
            f"MOTA {q['mota_visible']:.3f} / {q['mota_all']:.3f}, MOTP {q['motp_m']:.2f} m, IDF1 {q['idf1']:.3f}, "
            f"vehicle velocity RMSE {q['vehicle_vel_rmse_mps']:.3f} m/s",
            f"MOTA >= {b['tracker']['min_mota_visible']:.2f}, <= {b['tracker']['max_vehicle_vel_rmse_mps']:g} m/s",
            src(quality),
        ]
    )
    cr = next(x for x in cond["figures"]["results"] if x["plans"] == b["conditional"]["plans"])
    rows.append(
        [
            f"conditional prediction (`prescient bench conditional`), {cr['plans']} plans, {cr['tracks']} tracks",
            f"p50 {cr['p50']:.1f} ms, p99 {cr['p99']:.1f} ms",
            f"p99 <= {b['conditional']['p99_ms']:g} ms",
            src(cond),
        ]
    )
    rows.append(
        [
            f"simulator (`prescient bench sim`), 16 sensors, {b['sim']['at_agents']} agents",
            "not re-measured (the runs printed so far recorded no commit)",
            f">= {b['sim']['min_x_real_time']:g}x real time",
            "-",
        ]
    )
    rows.append(
        [
            "bus round trip (`prescient bench bus`), 1 KB / 100 KB / 1 MB",
            "not re-measured (the runs printed so far recorded no commit)",
            "-",
            "-",
        ]
    )
    comp = scen["figures"]["compliance"]
    cols = scen["figures"]["columns"]
    mmd = [i for i, col in enumerate(cols) if col.startswith("MMD")]
    by = {row[0]: row for row in scen["figures"]["rows"]}
    dens, spawner = by["diffusion + density token"], by["simulator spawner"]
    rows.append(
        [
            f"scenario generation (`bench_scenarios --runs-per-map 12`), {scen['figures']['held_out_scenes']} held-out scenes",
            f"pinned agents found {comp['inpainting']['found'] / comp['inpainting']['pins']:.0%} "
            f"({comp['learned_only']['found'] / comp['learned_only']['pins']:.0%} without inpainting); "
            f"MMD {_lo_hi([dens[i] for i in mmd], '.3f')} vs spawner {_lo_hi([spawner[i] for i in mmd], '.3f')}",
            "-",
            src(scen),
        ]
    )
    sf = smoke["figures"]
    rows.append(
        [
            f"`make docker-smoke` ({sf['containers']} containers, {sf['seconds']} s)",
            f"{sf['predictions']} predictions at {sf['rate_hz']:g} Hz, {sf['degraded']} degraded, {sf['provider']}, "
            f"all containers healthy; end to end from the newest frame *received* (not today's processing "
            f"latency) p50 {sf['e2e_ms']['p50']:g} ms, p99 {sf['e2e_ms']['p99']:g} ms",
            ">= 9 Hz, <= 5 % degraded",
            src(smoke),
        ]
    )
    rr = rel["figures"]["rows"]
    attacks = [x for x in rr if not x["attack"].startswith("kill:") and x["attack"] != "baseline"]
    crashes = [x for x in rr if x["crashes"]]
    fixed = {x["attack"]: x for x in rel_fix["figures"]["rows"]}
    single = [x["rates_hz"]["during"] for x in attacks if x["attack"] != "random_topics"]
    rt, rt_fix = next(x for x in rr if x["attack"] == "random_topics"), fixed.get("random_topics")
    lost = next(x["lost"] for x in rr if x["attack"] == "kill:recorder")
    crash_text = ", ".join(f"{x['crashes'][0].split(':')[0]} during {x['attack']}" for x in crashes)
    kills = sum(1 for x in rr if x["attack"].startswith("kill:"))
    rows.append(
        [
            f"`prescient bench reliability` ({len(attacks)} attacks, {rel['figures']['hostile']:,} hostile messages, "
            f"kill -9 of each of the {kills} children)",
            f"{sum(len(x['hangs']) for x in rr)} hangs; {len(crashes)} crash ({crash_text}), none when that attack "
            f"ran again at `{rel_fix['commit']}`; >= {min(single):.1f} Hz during every other attack, random_topics "
            f"{rt['rates_hz']['during']:.1f} Hz ({rt_fix['rates_hz']['during']:.1f} at `{rel_fix['commit']}`); "
            f"{lost['missing']} frames lost across a recorder kill -9",
            f">= {b['reliability']['during_min_hz']:g} Hz during single-source attacks, recorder loss <= "
            f"{b['reliability']['max_recorder_loss_s']:g} s",
            src(rel, rel_fix),
        ]
    )
    df = demo["figures"]
    how = demo["command"].split("(", 1)[1].rstrip(")")  # e.g. "fresh clone, after make test: ..."
    rows.append(
        [
            f"`make demo` ({how}; {df['agents']} agents, {df['duration_s']} s)",
            f"{df['predictions']} predictions, {df['degraded']} degraded, processing latency p50 "
            f"{df['processing_ms']['p50']:g} ms, p99 {df['processing_ms']['p99']:g} ms, data age p50 "
            f"{df['data_age_ms']['p50']:g} ms, p99 {df['data_age_ms']['p99']:g} ms, "
            f"{df['deadline_misses']} ticks over 100 ms",
            "-",
            src(demo),
        ]
    )
    return md_table(["what", "result", "budget (benchmarks/budgets.toml)", "commit, date, machine"], rows)


def tracker_quality_table() -> str:
    r = load("tracker_quality")
    rows = [
        [
            q["label"],
            f"{q['mota_visible']:.3f}",
            f"{q['mota_all']:.3f}",
            f"{q['motp_m']:.3f}",
            f"{q['idf1']:.3f}",
            q["id_switches"],
            f"{q['vehicle_vel_rmse_mps']:.3f}",
        ]
        for q in r["figures"]["quality"].values()
    ]
    head = [
        "scenario",
        "MOTA visible",
        "MOTA all",
        "MOTP (m)",
        "IDF1",
        "ID switches",
        "vehicle velocity RMSE (m/s)",
    ]
    return provenance(r, "benchmarks/measured/") + ":\n\n" + md_table(head, rows)


# --- benchmarks/README.md -------------------------------------------------------------------------

# budgets.toml table (or table.key) -> the benchmarks whose --check reads it
CHECKED_BY = {
    "e2e": "e2e",
    "stages.track_ms": "e2e (in the stack, at e2e.budget_agents)",
    "stages.raster_ms": "e2e (in the stack, at e2e.budget_agents), raster (alone)",
    "stages.infer_ms": "e2e (in the stack, at e2e.budget_agents), model (alone)",
    "raster": "raster",
    "tracker": "tracker",
    "sim": "sim",
    "conditional": "conditional",
    "recorder": "recorder",
    "reliability": "reliability",
}


def budgets_table() -> str:
    """Every value of ``benchmarks/budgets.toml`` and the benchmarks that check it."""
    rows = []
    for section, values in budgets().items():
        for key, value in values.items():
            by = CHECKED_BY.get(f"{section}.{key}", CHECKED_BY.get(section, "-"))
            rows.append([f"`{section}.{key}`", f"{value:g}", by])
    return md_table(["budget", "value", "checked by `prescient bench ... --check`"], rows)


def conditional_table() -> str:
    r = load("conditional")
    rows = [
        [
            x["plans"],
            x["tracks"],
            x["n"],
            *(f"{x[k]:.3f}" for k in ("p50", "p95", "p99", "max")),
            x["degraded"],
        ]
        for x in r["figures"]["results"]
    ]
    head = ["plans", "tracks", "n", "p50", "p95", "p99", "max", "degraded"]
    return provenance(r, "measured/") + f"; model `{r['model_id']}`, ms:\n\n" + md_table(head, rows)


def raster_table() -> str:
    r = load("raster")
    f = r["figures"]
    c, h, w = f["shape"]
    main = f["main"]
    rows = []
    for key, label in (
        ("fast", "fast (numba)"),
        ("fast_on_reference_scenes", "fast, reference scenes"),
        ("reference", "reference (numpy)"),
    ):
        s = main[key]
        rows.append([label, s["n"], *(f"{s[k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))])
    speedup = main["reference"]["p50_ms"] / main["fast_on_reference_scenes"]["p50_ms"]
    text = provenance(r, "measured/") + (
        f". Main case: {c} x {h} x {w}, {f['agents']} agents, {f['history_frames']} history frames (2 s), "
        f"one core; speed-up (p50, same scenes) {speedup:.0f}x.\n\n"
    )
    text += md_table(["path", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows)
    for name, sweep in f["sweeps"].items():
        srows = [
            [
                x["value"],
                *(f"{x[k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
                x.get("note", ""),
            ]
            for x in sweep
        ]
        text += f"\n\nCost vs {name} (fast path, {f['agents']} agents unless varied):\n\n"
        text += md_table([name, "p50 ms", "p95 ms", "p99 ms", "max ms", "note"], srows)
    return text


def tracker_speed_table() -> str:
    r = load("tracker_speed")
    b = budgets()
    rows = []
    for case, s in r["figures"]["speed"].items():
        for i, (wall, cpu) in enumerate(zip(s["wall"], s["cpu"])):
            rows.append(
                [case, i, *(f"{wall[k]:.2f}" for k in ("p50", "p95", "p99", "max")), f"{cpu['p99']:.2f}"]
            )
    cases = "; ".join(
        f"{case}: {s['agents']} agents, {s['frames_per_tick']:g} frames/tick, {s['tracks_per_tick']} tracks/tick, "
        f"{s['ticks']} ticks after warm-up"
        for case, s in r["figures"]["speed"].items()
    )
    head = ["case", "run", "wall p50", "p95", "p99", "max", "thread CPU p99"]
    return (
        provenance(r, "measured/")
        + f"; 16 sensors; {cases}. Tick cost in ms (budget p99 <= {b['tracker']['tick_p99_ms']:g} ms):\n\n"
        + md_table(head, rows)
    )


def model_table() -> str:
    r = load("model")
    f = r["figures"]
    c, h, w = f["raster"]
    rows = [
        [
            x["runtime"],
            x["provider"],
            x["n"],
            *(f"{x[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
        ]
        for x in f["results"]
    ]
    return (
        provenance(r, "measured/")
        + f"; {f['model']}, raster {c} x {h} x {w}, {f['agents']} agents, {f['threads']} threads, ms:\n\n"
        + md_table(["runtime", "provider", "n", "p50", "p95", "p99", "max"], rows)
    )


def _scen_fmt(column: str) -> str:
    """Decimals of a scenario-table column, as the benchmark prints them."""
    if column.startswith("MMD"):
        return ".4f"
    return ".2f" if column in ("count MAE", "agents") else ".3f"


def scenarios_table() -> str:
    r = load("scenarios")
    f = r["figures"]
    fmts = [_scen_fmt(col) for col in f["columns"]]
    rows = [[row[0], *(_f(v, fmt) for v, fmt in zip(row[1:], fmts[1:]))] for row in f["rows"]]
    printed = "\n".join(f["printed"])
    return (
        provenance(r, "measured/")
        + f"; weights: {r['weights']}.\n\n"
        + md_table(f["columns"], rows)
        + f"\n\n```\n{printed}\n```"
    )


def _reliability_rows(r: dict[str, Any]) -> list[list[str]]:
    out = []
    for x in r["figures"]["rows"]:
        kill = x["attack"].startswith("kill:")
        rec = "-" if kill else ">3"
        if x["recovery_s"] is not None:
            rec = f"{x['recovery_s']:.2f}"
        lat = "-"
        if x["reply_ms"]:
            lat = "/".join(f"{x['reply_ms'][k]:.1f}" for k in ("p50", "p95", "p99", "max"))
        lost = "-"
        if x["lost"] is not None:
            lo = x["lost"]
            lost = f"{lo['missing']} msgs = {lo['loss_s']:.2f} s"
            if lo["fill_parts"]:
                lost += f" (recorder parts alone: {lo['missing_recorder_only']} = {lo['loss_s_recorder_only']:.2f} s)"
            if not lo["pre_kill_log_kept"]:
                lost += "; log before kill gone"
        up = f"{x['up'][0]}/{x['up'][1]}" + (f" ({len(x['crashes'])} crashed)" if x["crashes"] else "")
        count = str(x["hostile"]) + (f" (+{x['valid']} valid)" if x["valid"] else "")
        rates = [f"{x['rates_hz'][k]:.1f}" for k in ("before", "during", "after")]
        out.append([x["attack"], x["target"], count, up, *rates, rec, x["counted"][:160], lost, lat])
    return out


def reliability_table(name: str) -> Callable[[], str]:
    def render() -> str:
        r = load(name)
        head = ["attack", "target", "count", "up", "Hz before", "during", "after", "recovery s"]
        head += ["counted as", "data lost", "reply ms p50/p95/p99/max"]
        mode = "--quick attacks" if r["figures"]["quick"] else "full-length attacks"
        return (
            provenance(r, "measured/")
            + f"; {mode}, model {r['model']}, {r['agents']} agents, {r['figures']['hostile']:,} hostile messages:\n\n"
            + md_table(head, _reliability_rows(r))
        )

    return render


# (file, block name) -> renderer
BLOCKS: dict[tuple[Path, str], Callable[[], str]] = {
    (README, "measured"): measured_table,
    (README, "tracker-quality"): tracker_quality_table,
    (BENCH_README, "budgets"): budgets_table,
    (README, "e2e-before-after"): latency_tables.e2e_before_after_table,
    (BENCH_README, "e2e-before-after"): latency_tables.e2e_before_after_table,
    (BENCH_README, "e2e"): latency_tables.e2e_table,
    (BENCH_README, "infer"): latency_tables.infer_table,
    (BENCH_README, "reorder"): latency_tables.reorder_table,
    (BENCH_README, "conditional"): conditional_table,
    (BENCH_README, "raster"): raster_table,
    (BENCH_README, "tracker-speed"): tracker_speed_table,
    (BENCH_README, "model"): model_table,
    (BENCH_README, "scenarios"): scenarios_table,
    (BENCH_README, "reliability-352d5b0"): reliability_table("reliability_352d5b0"),
    (BENCH_README, "reliability-ec53f1c"): reliability_table("reliability_ec53f1c"),
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated: {re.escape(name)} [^\n]*-->\n)(.*?)(<!-- end generated: {re.escape(name)} -->)",
        re.S,
    )


def begin_marker(name: str) -> str:
    return f"<!-- generated: {name} (python -m prescient.benchmarks.tables; do not edit by hand) -->"


def render(text: str, path: Path) -> str:
    """``text`` (the content of ``path``) with every block of ``path`` regenerated."""
    for (p, name), fn in BLOCKS.items():
        if p != path:
            continue
        pat = _pattern(name)
        if len(pat.findall(text)) != 1:
            raise ResultFileError(
                f"{path.relative_to(REPO)}: expected one '{begin_marker(name)}' ... end block"
            )
        body = fn().rstrip("\n") + "\n"
        text = pat.sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
    return text


def stale_blocks() -> list[str]:
    """``file: block`` for every generated block whose text differs from its result files."""
    out = []
    for path in sorted({p for p, _ in BLOCKS}):
        text = path.read_text()
        for (p, name), fn in BLOCKS.items():
            if p != path:
                continue
            m = _pattern(name).search(text)
            if m is None or m.group(2) != fn().rstrip("\n") + "\n":
                out.append(f"{path.relative_to(REPO)}: {name}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 naming each stale block")
    args = ap.parse_args(argv)
    if not README.is_file():  # an installed package: nothing to regenerate, nothing to write there
        print(f"{README} not found: this regenerates the README tables of a source checkout", file=sys.stderr)
        return 1
    if args.check:
        stale = stale_blocks()
        for s in stale:
            print(f"stale: {s} (regenerate: python -m prescient.benchmarks.tables)")
        return 1 if stale else 0
    for path in sorted({p for p, _ in BLOCKS}):
        text = path.read_text()
        new = render(text, path)
        if new != text:
            path.write_text(new)
            print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
