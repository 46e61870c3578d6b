"""``prescient eval-floor``: the simulator's own resampled futures as a floor beside the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prescient.models.eval_floor import (
    evaluate_floor,
    floor_scores,
    format_floor,
    greedy_cover,
    hold_last,
    medoid_paths,
    summarize,
)
from prescient.models.shards import SimDataError, list_shards, write_shard
from tests.models.test_sim_data import generate_small_run


def _line(end_xy: tuple[float, float], t: int = 10) -> np.ndarray:
    return np.linspace(0, 1, t + 1)[1:, None] * np.asarray(end_xy)[None]


def test_medoid_cover_and_scores_on_hand_made_rollouts():
    # Five rollouts of one agent: three end near (10, 0), one at (0, 10), one at (-10, 0).
    ends = [(10, 0), (10.5, 0), (9.5, 0.5), (0, 10), (-10, 0)]
    paths = np.stack([_line(e) for e in ends])[:, None]  # (R=5, N=1, T, 2)
    medoid_end = medoid_paths(paths)[0, -1]
    assert any(np.allclose(medoid_end, e) for e in ends[:3])  # a path of the cluster, not an outlier
    chosen = greedy_cover(paths[:, :, -1], 2, 2.0)
    assert chosen[0, 0] in (0, 1, 2) and chosen[1, 0] in (3, 4)  # the cluster first, then another end
    truth = _line((20, 20))[None]
    s = floor_scores(paths, truth)
    assert s["ml_fde"][0] == pytest.approx(np.linalg.norm(medoid_end - (20, 20)))
    assert s["miss"][0] == 1.0  # no rollout ends within 2 m of the truth
    seven = np.stack([_line(e) for e in ends + [(0, 10.2), (19.5, 20)]])[:, None]
    assert floor_scores(seven, truth)["miss"][0] == 0.0  # 4 clusters: six paths cover them all


def test_hold_last_keeps_where_an_agent_left():
    paths = np.stack([_line((5, 0))])[:, None].copy()
    valid = np.ones(paths.shape[:3], bool)
    valid[0, 0, 6:] = False
    paths[0, 0, 6:] = 0.0
    held = hold_last(paths, valid)
    np.testing.assert_allclose(held[0, 0, 6:], np.repeat(paths[0, 0, 5:6], 4, axis=0))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_small_run(tmp_path_factory.mktemp("floor_data"))


def test_floor_on_generated_runs_and_refusal_of_foreign_futures(data_dir: Path, tmp_path: Path):
    scores = evaluate_floor(data_dir, None, rollouts=3, every=2)
    n = len(scores["class_id"])
    assert n > 0 and all(len(v) == n for v in scores.values())
    summary = summarize(scores)
    assert set(summary["all"]) == {"cv", "state", "+successors", "+signals"}
    for r in summary["all"].values():
        assert np.isfinite([r["ml_ade"], r["ml_fde"], r["miss"]]).all()
    text = format_floor(summary, 3)
    assert "| all |" in text and "floor +signals" in text

    # A recorded future the simulator does not reproduce (another simulator version) is refused.
    src = list_shards(data_dir)[0]
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["target_xy_m"] = arrays["target_xy_m"] + 0.5
    bad = tmp_path / "bad"
    bad.mkdir()
    write_shard(bad / src.name, arrays)
    with pytest.raises(SimDataError, match="does not reproduce"):
        evaluate_floor(bad, None, rollouts=2, every=2)
