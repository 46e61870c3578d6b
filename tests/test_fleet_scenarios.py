"""``prescient fleet scenarios``: generated scenes run through the stack, ranked, reproducible, bad maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prescient.service.app.cli import main
from prescient.service.app.fleet.scenario_score import box_corners, box_gaps, severity_key, ttc_s
from prescient.service.app.fleet.scenarios import generate_batch, plan_batches, rank, run_scene
from prescient.sim_sensors.scenario_file import load_scene

pytest.importorskip("ray")
pytest.importorskip("torch")

ARGS = ["--n", "3", "--maps", "intersection,roundabout", "--seconds", "2", "--steps", "2", "--no-model"]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One small campaign on a local Ray instance (2 workers), in this process."""
    out = tmp_path_factory.mktemp("scn") / "out"
    code = main(["fleet", "scenarios", *ARGS, "--out", str(out), "--workers", "2"])
    rows = [json.loads(line) for line in (out / "scenes.jsonl").read_text().splitlines()]
    return {"code": code, "out": out, "rows": rows}


def test_campaign_ranks_worst_first_with_replay_commands(campaign: dict) -> None:
    """Exit 0; ranks follow the severity order; each replay command names a scene that loads."""
    assert campaign["code"] == 0
    rows = campaign["rows"]
    assert [r["index"] for r in rows] == [0, 1, 2] and all(r["status"] == "ok" for r in rows)
    by_rank = sorted(rows, key=lambda r: r["rank"])
    keys = [severity_key(r) for r in by_rank]
    assert keys == sorted(keys)
    report = (campaign["out"] / "report.md").read_text()
    for r in rows:
        ref = r["replay"].split("--from-scenario ")[1].split()[0]
        path, idx = ref.split("#")
        assert Path(path) == campaign["out"] / "scenes.json" and int(idx) == r["index"]
        assert load_scene(ref).map_name == r["map"] == ("intersection", "roundabout")[r["index"] % 2]
        assert r["replay"] in report
        assert r["ticks"] > 0 and r["safety"]["min_gap_m"] is not None
    assert report.index(f"| 1 | {by_rank[0]['index']} |") < report.index(f"| 2 | {by_rank[1]['index']} |")


def test_campaign_is_deterministic(campaign: dict) -> None:
    """The same generation and run, out of Ray and in this process, give the same scenes and scores."""
    doc = json.loads((campaign["out"] / "scenes.json").read_text())
    name, idx, seed = plan_batches(3, ("intersection", "roundabout"), 8, 0)[0]
    from prescient.models.scenario_diffusion.tokens import TokenSpec

    again = generate_batch(name, len(idx), seed, TokenSpec(), 2, None)
    for i, obj in zip(idx, again):
        want = {k: v for k, v in doc["scenes"][i].items() if k != "meta"}
        assert {k: v for k, v in obj.items() if k != "meta"} == want
    rec, moment = run_scene(doc["scenes"][0], 0, 2.0, None)
    row = campaign["rows"][0]
    for k in ("safety", "prediction", "planner", "ticks", "degraded_ticks", "agents_placed"):
        assert rec[k] == row[k], k
    assert moment


def test_bad_maps_one_line_exit_1(tmp_path: Path, capsys) -> None:
    """An unknown map stops the campaign before Ray with one line; nothing is written."""
    out = tmp_path / "out"
    assert (
        main(
            [
                "fleet",
                "scenarios",
                "--n",
                "2",
                "--maps",
                "intersection,atlantis",
                "--out",
                str(out),
                "--no-model",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "atlantis" in err
    assert not out.exists() or not any(out.iterdir())


def test_severity_order_and_geometry() -> None:
    """Collision before near miss before lower TTC before larger minFDE; box gaps and TTC by hand."""

    def rec(i: int, col: bool, near: bool, ttc: float | None, fde: float | None) -> dict:
        return {"index": i, "status": "ok", "safety": {"collision": col, "near_miss": near, "min_ttc_s": ttc},
                "prediction": {"model_min_fde": fde}}  # fmt: skip

    recs = [rec(0, False, False, None, 9.0), rec(1, False, False, 2.0, 1.0), rec(2, False, True, 5.0, 1.0),
            rec(3, True, False, 4.0, 0.1), rec(4, False, False, 2.0, 3.0), {"index": 5, "status": "failed"}]  # fmt: skip
    assert [r["index"] for r in rank(recs)] == [3, 2, 4, 1, 0, 5]
    ego = box_corners(np.zeros((1, 2)), np.zeros(1), np.array([4.0]), np.array([2.0]))[0]
    boxes = box_corners(np.array([[5.0, 0.0], [3.0, 0.0], [0.0, 3.5]]), np.array([0.0, 0.5, np.pi / 2]),
                        np.array([2.0, 2.0, 1.0]), np.array([2.0, 2.0, 1.0]))  # fmt: skip
    np.testing.assert_allclose(box_gaps(ego, boxes), [2.0, 0.0, 2.0], atol=1e-9)
    t = ttc_s(
        np.array([[12.5, 0.0], [0.0, 10.0], [1.0, 0.0]]), np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 0.0]])
    )
    np.testing.assert_allclose(t, [2.0, np.inf, 0.0])
