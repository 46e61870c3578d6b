"""Conditional predictions: the last tick's scene under each of the planner's candidate ego plans.

The planner stub asks "if I drive each of these plans, how will the others react?" between
ticks. The answer must never delay the 10 Hz predictions: ``budget_ns`` (live: the slack before
the next tick) bounds it. A plan is not started when the recent plans' median time (raster and
model pass) does not fit in what is left, and the model pass itself keeps the pipeline's deadline
guard; the plans left over get constant velocity.

Every plan is rendered from the :class:`~prescient.service.pipeline_types.TickScene` the tick
kept, so a request answered after more frames came in (a queued one, answered in a later loop
turn) still gets the tick's scene: its tracks with its lights, LiDAR and ego history.

A reply with any plan on the fallback is flagged ``degraded`` with the first reason. A pure
stage: no sockets; wall-clock durations are measured only to honour the budget.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from prescient.bus import messages as m
from prescient.bus.config import RequestLimits
from prescient.service.model_io.baselines import constant_velocity_predictions
from prescient.service.pipeline_types import TickScene

if TYPE_CHECKING:
    from prescient.service.pipeline import Pipeline

PLAN_TIMES_KEPT = 10  # plan durations behind the median that decides whether one more fits


def answer(
    pipe: Pipeline,
    request: m.ConditionalRequest,
    budget_ns: int | None,
    limits: RequestLimits | None,
    plan_ns: deque[int],
) -> m.ConditionalReply:
    """Predictions for ``pipe``'s last tick under each plan of ``request`` (see module docstring).

    Args:
        pipe: the pipeline whose last tick (``pipe.scene``) is asked about.
        request: (B, S, 2) world-frame plans.
        budget_ns: time allowed from now, or None (offline: no bound).
        limits: caps on plans, steps and bytes (default :class:`RequestLimits`).
        plan_ns: durations of recent plans (raster + model), updated here.

    Raises:
        RequestLimitExceeded: over ``limits``, checked before any work.
    """
    t0 = time.perf_counter_ns()
    deadline_ns = None if budget_ns is None else t0 + int(budget_ns)
    plans = np.asarray(request.plans_xy_m, np.float32)
    (limits or RequestLimits()).check_plans(plans.shape)
    scene = pipe.scene
    n = 0 if scene is None else len(scene.tracks.track_id)
    b, k, t = plans.shape[0], pipe.num_modes, pipe.future_steps
    traj = np.zeros((b, n, k, t, 2), np.float32)
    probs = np.zeros((b, n, k), np.float32)
    scale = np.ones((b, n, k, t, 2), np.float32)
    reasons: list[str] = []
    infer_total = 0
    if scene is not None:
        out = (traj, probs, scale)
        infer_total = _run_plans(pipe, scene, plans, out, reasons, deadline_ns, plan_ns)
    stamp_ns = 0 if scene is None else scene.stamp_ns
    return m.ConditionalReply(
        header=m.Header(topic=m.TOPIC_CONDITIONAL_REPLY, stamp_ns=int(stamp_ns)),
        request_id=request.request_id,
        model_id=pipe.model_id,
        source_stamp_ns=int(stamp_ns),
        degraded=bool(reasons) or scene is None,
        reason=reasons[0] if reasons else ("no tick yet" if scene is None else ""),
        timings_ns={"infer": int(infer_total), "total": time.perf_counter_ns() - t0},
        track_id=np.asarray(scene.tracks.track_id if scene is not None else np.zeros(0), np.int64),
        mode_probs=probs,
        trajectories_m=traj,
        scale_m=scale,
    )


def _run_plans(
    pipe: Pipeline,
    scene: TickScene,
    plans: np.ndarray,
    out: tuple[np.ndarray, np.ndarray, np.ndarray],
    reasons: list[str],
    deadline_ns: int | None,
    plan_ns: deque[int],
) -> int:
    """Fill ``out`` (traj, probs, scale; leading axis: the plans) plan by plan; the reasons of
    the plans on the fallback go to ``reasons``. Returns the model's time in ns."""
    traj, probs, scale = out
    b, k, t = plans.shape[0], traj.shape[2], traj.shape[3]
    infer_total = 0
    for i in range(b):
        stop = _stop_reason(deadline_ns, plan_ns)
        if stop:
            # The rest share one fallback (it does not depend on the plan).
            traj[i:], probs[i:], scale[i:] = _fallback(scene, k, t)
            reasons.append(f"{stop}: {b - i} of {b} plans answered by constant velocity")
            break
        t_plan = time.perf_counter_ns()
        raster = pipe.render_scene(scene, plans[i])
        tr, pr, sc, degraded, reason, infer_ns = pipe.predict_scene(raster, scene, plans[i], deadline_ns)
        traj[i], probs[i], scale[i] = tr, pr, sc
        infer_total += infer_ns
        if degraded:
            reasons.append(reason)
        else:  # only model passes say how long the next one takes
            plan_ns.append(time.perf_counter_ns() - t_plan)
    return infer_total


def _stop_reason(deadline_ns: int | None, plan_ns: deque[int]) -> str:
    """Why the next plan must not start ("" when it may)."""
    if deadline_ns is None:
        return ""
    left_ns = deadline_ns - time.perf_counter_ns()
    if left_ns <= 0 or (plan_ns and int(np.median(plan_ns)) > left_ns):
        return "over budget"
    return ""


def _fallback(scene: TickScene, k: int, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Constant velocity for the scene's tracks: (N, K, T, 2), (N, K), (N, K, T, 2)."""
    return constant_velocity_predictions(
        np.asarray(scene.tracks.position_m, np.float64),
        np.asarray(scene.tracks.velocity_mps, np.float64),
        num_modes=k,
        future_steps=t,
        dt_s=m.PRED_DT_S,
    )
