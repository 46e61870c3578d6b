"""TrajectoryNet: shapes, masking, interaction, plan conditioning, loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prescient.models.export import random_inputs
from prescient.models.export_tiny import build_tiny_model
from prescient.models.net import TrajectoryNet, wta_laplace_loss
from prescient.service.model_io.config import INPUT_NAMES


def _feed(model: TrajectoryNet, batch: int = 1, seed: int = 0, n_valid: int = 5) -> dict[str, torch.Tensor]:
    return {
        k: torch.from_numpy(v) for k, v in random_inputs(model.cfg, batch, seed=seed, n_valid=n_valid).items()
    }


def _run(model: TrajectoryNet, feed: dict[str, torch.Tensor]):
    with torch.no_grad():
        return model(*(feed[n] for n in INPUT_NAMES))


def test_net_forward_shapes_and_probs_sum_to_one():
    """Outputs have the configured shapes, probabilities sum to 1, scales are positive."""
    model = build_tiny_model()
    cfg = model.cfg
    traj, probs, scale = _run(model, _feed(model, batch=2))
    assert tuple(traj.shape) == cfg.output_shapes(2)["traj"]
    assert tuple(probs.shape) == cfg.output_shapes(2)["probs"]
    assert tuple(scale.shape) == cfg.output_shapes(2)["scale"]
    np.testing.assert_allclose(probs.sum(-1).numpy(), 1.0, atol=1e-5)
    assert float(scale.min()) > 0
    assert torch.isfinite(traj).all()


def test_net_padded_agents_do_not_change_valid_outputs():
    """Garbage in padded agent slots must not leak into the valid agents' predictions."""
    model = build_tiny_model()
    feed = _feed(model, n_valid=4)
    ref = _run(model, feed)
    feed2 = {k: v.clone() for k, v in feed.items()}
    feed2["agent_hist"][:, 4:] = 123.0
    feed2["agent_state"][:, 4:, :2] = 7.0
    out = _run(model, feed2)
    for r, o in zip(ref, out):
        torch.testing.assert_close(r[:, :4], o[:, :4], atol=1e-5, rtol=0)


def test_net_moving_another_agent_changes_prediction():
    """Interaction: an agent's prediction depends on where the other agents are."""
    model = build_tiny_model()
    feed = _feed(model, n_valid=3)
    ref = _run(model, feed)[0]
    feed["agent_state"][0, 2, :2] += torch.tensor([3.0, -2.0])
    out = _run(model, feed)[0]
    assert float((ref[0, 0] - out[0, 0]).abs().max()) > 1e-4


def test_net_ego_plan_changes_prediction():
    """Plan conditioning: a different ego plan changes the other agents' predictions."""
    model = build_tiny_model()
    feed = _feed(model, n_valid=3)
    ref = _run(model, feed)[0]
    feed["ego_plan"] = feed["ego_plan"] * -1.0
    out = _run(model, feed)[0]
    assert float((ref[0, :3] - out[0, :3]).abs().max()) > 1e-4


def test_wta_loss_exact_mode_gives_zero_min_ade():
    """If one mode equals the ground truth, min ADE is 0 and the CE targets that mode."""
    b, n, k, t = 1, 2, 3, 5
    fut = torch.randn(b, n, t, 2)
    traj = torch.randn(b, n, k, t, 2) * 10
    traj[:, :, 1] = fut
    logits = torch.zeros(b, n, k)
    scale = torch.ones(b, n, k, t, 2)
    valid = torch.ones(b, n, t)
    _, stats = wta_laplace_loss(traj, logits, scale, fut, valid)
    assert stats["min_ade_m"] < 1e-6
    np.testing.assert_allclose(stats["ce"], np.log(3), rtol=1e-5)


def test_wta_loss_soft_target_rewards_a_mode_that_is_near_but_not_closest():
    """With soft_target_m, logits favouring a mode 0.1 m off beat logits favouring a mode 5 m off.

    The hard target sees only the closest mode, so both logit choices cost the same there.
    """
    b, n, k, t = 1, 1, 3, 4
    fut = torch.zeros(b, n, t, 2)
    traj = torch.zeros(b, n, k, t, 2)
    traj[..., 1, :, 0] = 0.1
    traj[..., 2, :, 0] = 5.0
    scale, valid = torch.ones(b, n, k, t, 2), torch.ones(b, n, t)
    near, far = torch.tensor([[[0.0, 4.0, 0.0]]]), torch.tensor([[[0.0, 0.0, 4.0]]])

    def ce(logits, **kw):
        return wta_laplace_loss(traj, logits, scale, fut, valid, **kw)[1]["ce"]

    assert ce(near) == pytest.approx(ce(far))
    assert ce(near, soft_target_m=0.3) < ce(far, soft_target_m=0.3) - 1.0


def test_wta_loss_ignores_padded_agents():
    """Agents with no valid future do not contribute to the loss."""
    b, n, k, t = 1, 2, 2, 4
    fut = torch.zeros(b, n, t, 2)
    traj = torch.zeros(b, n, k, t, 2)
    traj[:, 1] = 1000.0
    valid = torch.ones(b, n, t)
    valid[:, 1] = 0
    _, stats = wta_laplace_loss(traj, torch.zeros(b, n, k), torch.ones(b, n, k, t, 2), fut, valid)
    assert stats["min_ade_m"] < 1e-6


def test_net_training_steps_reduce_loss():
    """A few Adam steps on one fixed batch lower the loss (gradients flow end to end)."""
    torch.manual_seed(0)
    model = build_tiny_model().train()
    feed = _feed(model, batch=2, n_valid=4)
    cfg = model.cfg
    fut = torch.cumsum(torch.ones(2, cfg.n_max, cfg.future_steps, 2) * 0.5, dim=2)
    valid = torch.zeros(2, cfg.n_max, cfg.future_steps)
    valid[:, :4] = 1
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        traj, logits, scale = model.forward_logits(*(feed[n] for n in INPUT_NAMES))
        loss, _ = wta_laplace_loss(traj, logits, scale, fut, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_edge_values_applied_after_the_attention_sum_equal_the_direct_form() -> None:
    """EdgeAttention pools the edge MLP's hidden layer with the attention weights and applies
    the value weights once per token: the same result as the per-edge value tensor."""
    import math

    from prescient.models.net import MASK_LOGIT, EdgeAttention

    torch.manual_seed(0)
    att = EdgeAttention(32, 4)
    x, edges = torch.randn(2, 9, 32), torch.randn(2, 9, 9, 7)
    key_mask = torch.tensor([[1.0] * 6 + [0.0] * 3, [1.0] * 9])
    b, m, d = x.shape
    q, k, v = (t.reshape(b, m, 4, 8).transpose(1, 2) for t in att.qkv(att.norm1(x)).chunk(3, dim=-1))
    e = att.edge(edges)
    logits = q @ k.transpose(-1, -2) / math.sqrt(8) + e[..., :4].permute(0, 3, 1, 2)
    attn = torch.softmax(logits + (1.0 - key_mask)[:, None, None, :] * MASK_LOGIT, dim=-1)
    out = attn @ v + torch.einsum("bhij,bijhc->bhic", attn, e[..., 4:].reshape(b, m, m, 4, 8))
    y = x + att.out(out.transpose(1, 2).reshape(b, m, d))
    ref = y + att.ffn(att.norm2(y))
    assert torch.allclose(att(x, edges, key_mask), ref, atol=1e-5)
