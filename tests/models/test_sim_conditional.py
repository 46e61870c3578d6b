"""Plan conditioning against the simulator: its 'keep' and 'stop' branches of one scene."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from prescient.models.eval_conditional import scene_report

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "shipped" / "prescient.onnx"


def test_scene_report_lists_moved_tracks_and_counts_phantoms():
    """Predicted vs simulated 8 s shifts per track; a track the plan does not move but whose
    prediction moves > 1 m is a phantom reaction."""
    traj = np.zeros((2, 3, 1, 80, 2))
    traj[1, 0, 0, -1] = [0.5, 0.0]  # track 10: true 30 m, predicted 0.5 m (missed)
    traj[1, 1, 0, -1] = [0.0, 6.0]  # track 11: true 0, predicted 6 m (phantom)
    reply = SimpleNamespace(mode_probs=np.ones((2, 3, 1)), trajectories_m=traj)
    scene = {
        "reply": reply,
        "tracks": SimpleNamespace(track_id=np.array([10, 11, 12])),
        "true_effect_m": np.array([30.0, 0.0, np.nan]),
        "names": ("keep", "stop"),
    }
    text = scene_report(scene)
    assert "3 tracks, 2 matched" in text
    assert "track 10: 0.5 / 30.0" in text and "track 11: 6.0 / 0.0" in text and "track 12" not in text
    assert text.endswith("predicted > 1 m): 1")


@pytest.mark.slow
def test_shipped_model_reacts_where_the_simulated_agents_react():
    """Held-out run (t_junction, seed 104, 20 s), branched by the simulator into 'keep' and 'stop':
    the track whose simulated future the stop moves is predicted to move by about as much, and
    no track the stop leaves in place is predicted to move by more than 1 m."""
    if not SHIPPED.is_file():
        pytest.skip(f"shipped model not found at {SHIPPED}")
    from prescient.models.eval_conditional import conditional_scene, plan_effect_m

    scene = conditional_scene(SHIPPED, "t_junction", seed=104, t_s=20.0)
    reply = scene["reply"]
    assert not reply.degraded, reply.reason
    assert reply.trajectories_m.shape[0] == 2
    plans = scene["plans"]
    length = np.linalg.norm(np.diff(plans, axis=1), axis=-1).sum(-1)
    assert length[1] < length[0]  # the simulated stop ends short of keep
    pred, true = plan_effect_m(reply), scene["true_effect_m"]
    matched = np.isfinite(true)
    assert matched.mean() > 0.8  # tracks found their simulated agents
    reacting = matched & (np.nan_to_num(true) > 1.0)
    # Measured with prescient-e32db41106a7: one reacting track, 1.1 m predicted for 1.5 m true
    # (prescient-dc658175c825, without the mode scorer: 1.5 m); no phantom reaction.
    assert reacting.any()
    assert np.all(pred[reacting] > 0.5 * true[reacting])
    assert not np.any(matched & (np.nan_to_num(true) < 0.1) & (pred > 1.0))
