"""Networks, training loops, sampling, generator I/O and the CLI, with tiny random models and tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prescient.models.scenario_diffusion import grid as G
from prescient.models.scenario_diffusion.data import RunSpec, scenes_to_arrays, simulate_scenes
from prescient.models.scenario_diffusion.generate import ScenarioGenerator, match_pins
from prescient.models.scenario_diffusion.model import (
    LatentUNet,
    ModelConfig,
    SceneVAE,
    cosine_alpha_bar,
    ddim_sample,
    rasterize_tokens,
    vae_loss,
)
from prescient.models.scenario_diffusion.tokens import TokenSpec, agent_tokens, parse_spec, pin_random_agents
from prescient.models.scenario_diffusion.train import (
    SceneSet,
    encode_all,
    match_agents,
    pin_compliance,
    save_weights,
    train_diffusion,
    train_vae,
    turn_agents,
    vae_recall,
)
from prescient.sim_sensors.scenario_file import load_scenes

TINY = ModelConfig(vae_width=4, unet_width=8, token_width=8, n_heads=2, diffusion_steps=50)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine: intra-op threads only add contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_set() -> SceneSet:
    scenes = simulate_scenes(RunSpec("intersection", 7, 40, 4.0, 2, 1))
    return SceneSet(arrays=scenes_to_arrays(scenes))


@pytest.fixture(scope="module")
def tiny_models(tiny_set) -> tuple[SceneVAE, LatentUNet, float]:
    torch.manual_seed(0)
    vae, unet = SceneVAE(TINY), LatentUNet(TINY)
    train_vae(vae, tiny_set, 1.0, seed=0, batch=4, max_steps=3)
    z, m16 = encode_all(vae, tiny_set)
    scale = float(1.0 / z.std())
    train_diffusion(unet, tiny_set, z * scale, m16, 1.0, seed=0, batch=4, max_steps=3, n_steps=TINY.diffusion_steps,
                    vae=vae, latent_scale=scale)  # fmt: skip
    return vae, unet, scale


def test_dataset_scenes_are_sane(tiny_set) -> None:
    assert len(tiny_set) >= 2
    t = tiny_set.table(0)
    assert t.shape[1] == G.AGENT_COLS and np.all(np.abs(t[:, G.A_X : G.A_Y + 1]) < G.EXTENT_M)
    x, g, m = tiny_set.batch(np.array([0, 1]))
    assert x.shape == (2, G.GRID_CHANNELS + 1, 64, 64) and m.shape == (2, 9, 64, 64)
    assert float(m[:, 0].mean()) > 0.05  # some drivable area around the ego
    assert float(g[:, 0].sum()) == sum(len(tiny_set.table(i)) for i in (0, 1)) - 0  # one cell per agent


def test_shapes_and_loss_decreases(tiny_set) -> None:
    torch.manual_seed(1)
    vae = SceneVAE(TINY)
    x, g, m = tiny_set.batch(np.arange(min(4, len(tiny_set))))
    mu, logvar = vae.encode(x, m)
    assert mu.shape == (len(x), 4, 16, 16)
    raw = vae.decode(mu, m)
    assert raw.shape == (len(x), G.GRID_CHANNELS, 64, 64)
    opt = torch.optim.Adam(vae.parameters(), 1e-2)
    losses = []
    for _ in range(15):
        mu, logvar = vae.encode(x, m)
        loss, parts = vae_loss(vae.decode(mu, m), g, mu, logvar, 1e-3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
    assert set(parts) == {"bce", "ce", "l1", "kl"}


def test_ddim_is_seeded(tiny_models) -> None:
    _, unet, _ = tiny_models
    ab = cosine_alpha_bar(TINY.diffusion_steps)
    args = (torch.zeros(2, 9, 16, 16), torch.zeros(2, 8, 14), torch.zeros(2, 8, dtype=torch.bool),
            torch.zeros(2, 2), torch.zeros(2, dtype=torch.bool))  # fmt: skip
    a = ddim_sample(unet, ab, *args, n_steps=5, generator=torch.Generator().manual_seed(3))
    b = ddim_sample(unet, ab, *args, n_steps=5, generator=torch.Generator().manual_seed(3))
    c = ddim_sample(unet, ab, *args, n_steps=5, guidance=2.0, generator=torch.Generator().manual_seed(4))
    assert a.shape == (2, 4, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(c).all()


def test_match_agents_and_pins() -> None:
    gt = np.zeros((2, G.AGENT_COLS))
    gt[:, G.A_CLS] = [1, 4]
    gt[:, G.A_X] = [0.0, 10.0]
    pred = gt.copy()
    pred[0, G.A_X] += 0.5
    pred[1, G.A_X] += 3.0
    assert match_agents(gt, pred, 1.0, 0.3).tolist() == [[0, 0]]
    assert match_pins(gt, pred).tolist() == [0, -1]  # 3 m > 2.2 m
    pred[0, G.A_YAW] = 0.3
    assert match_pins(gt, pred).tolist() == [-1, -1]  # 0.3 rad > 0.2 rad
    pred[0, G.A_YAW], pred[0, G.A_CLS] = 0.0, 2
    assert match_pins(gt, pred).tolist() == [-1, -1]  # class must match


def test_recall_is_counted(tiny_models, tiny_set) -> None:
    vae, _, _ = tiny_models
    r = vae_recall(vae, tiny_set, threshold=0.0)
    assert r["n_gt"] == sum(len(tiny_set.table(i)) for i in range(len(tiny_set)))
    assert 0.0 <= r["recall"] <= 1.0 and r["n_pred"] > 0


def test_generator_roundtrip_and_cli(tiny_models, tmp_path, capsys) -> None:
    from prescient.service.app.cli import main

    vae, unet, scale = tiny_models
    w = save_weights(tmp_path / "w.pt", TINY, vae, unet, scale, {"note": "tiny"})
    gen = ScenarioGenerator.load(w)
    spec = parse_spec({"density": 5, "agents": [{"class": "bus", "x_m": 20, "y_m": -3, "yaw_rad": 0.8}]})
    a = gen.generate("t_junction", spec, n=3, seed=5, n_steps=4, threshold=0.0, batch=2)
    b = gen.generate("t_junction", spec, n=3, seed=5, n_steps=4, threshold=0.0, batch=2)
    assert len(a) == 3 and all(s.map_name == "t_junction" for s in a)
    assert [s.n_agents for s in a] == [s.n_agents for s in b] and a[0].n_agents > 0
    np.testing.assert_allclose(a[0].xy_m, b[0].xy_m)
    assert a[0].meta["pins_requested"] == 1 and a[0].meta["ddim_steps"] == 4
    e = gen.generate("t_junction", spec, n=2, seed=5, n_steps=4, threshold=0.0, batch=2, enforce_pins=True)
    for s in e:  # every pin is present: produced by the model or inserted (and then counted)
        assert s.meta["pins_found"] + s.meta["pins_inserted"] == 1 and s.pinned.sum() >= 1
        xy, yaw = s.to_ego_frame()
        bus = np.nonzero(s.pinned & (s.cls == 3))[0]
        assert len(bus) and np.hypot(*(xy[bus[0]] - [20.0, -3.0])) <= 2.2 and abs(yaw[bus[0]] - 0.8) <= 0.2
    out = tmp_path / "scenes.json"
    rc = main(["scenarios", "generate", "--map", "roundabout", "--n", "2", "--steps", "3", "--weights", str(w),
               "--out", str(out), "--threshold", "0.2", "--picture", str(tmp_path / "s.png")])  # fmt: skip
    assert rc == 0 and len(load_scenes(out)) == 2 and (tmp_path / "s.png").stat().st_size > 10_000
    assert "2 scenes on roundabout" in capsys.readouterr().out
    rc = main(
        [
            "scenarios",
            "generate",
            "--map",
            "roundabout",
            "--weights",
            str(tmp_path / "nope.pt"),
            "--out",
            str(out),
        ]
    )
    assert rc == 1 and "scenario weights not found" in capsys.readouterr().err
    (tmp_path / "spec.yaml").write_text("map: arterial\n")
    rc = main(["scenarios", "generate", "--map", "roundabout", "--weights", str(w), "--tokens",
               str(tmp_path / "spec.yaml"), "--out", str(out)])  # fmt: skip
    assert rc == 1 and "not 'roundabout'" in capsys.readouterr().err
    assert isinstance(TokenSpec().tokens()[0], np.ndarray)


def test_evaluate_runs_end_to_end(tiny_models) -> None:
    from prescient.models.scenario_diffusion.evaluate import evaluate, format_report

    vae, unet, scale = tiny_models
    gen = ScenarioGenerator(vae, unet, scale, TINY)
    r = evaluate(gen, runs_per_map=1, n_steps=3, batch=8)
    assert r["n_heldout_scenes"] == 8
    assert set(r["rows"]) == {
        "heldout_b",
        "spawner",
        "diffusion",
        "diffusion+density",
        "diffusion+density+pins",
    }
    assert 0 <= r["compliance_learned_only"]["found"] <= r["compliance_learned_only"]["pins"]
    assert np.isfinite(r["rows"]["spawner"]["mmd_position"])
    assert r["rows"]["heldout_b"]["mmd_position"] < 0.5
    assert r["compliance"]["pins"] > 0 and 0.0 <= r["compliance"]["rate"] <= 1.0
    text = format_report(r)
    assert "token compliance" in text and "| spawner |" in text


def test_pin_raster_draws_tokens_where_they_are() -> None:
    rows = np.zeros((2, G.AGENT_COLS))
    rows[:, [G.A_CLS, G.A_X, G.A_Y, G.A_YAW, G.A_L, G.A_W, G.A_SPEED]] = [[3, 10.3, -5.2, 0.5, 12.0, 2.5, 4.0],
                                                                          [4, -20.0, 7.0, 0.0, 0.5, 0.6, 1.2]]  # fmt: skip
    tok = torch.from_numpy(agent_tokens(rows))[None]
    both = rasterize_tokens(tok, torch.tensor([[True, True]]))[0].numpy()
    bus_only = rasterize_tokens(tok, torch.tensor([[True, False]]))[0].numpy()
    # Footprint channel = the same boxes the detection grid's footprint draws (same pixel convention).
    np.testing.assert_array_equal(both[0], G.footprint(rows))
    np.testing.assert_array_equal(bus_only[0], G.footprint(rows[:1]))
    # Class channels: the bus footprint lands in the bus channel (class 3 -> channel 3 + 2).
    np.testing.assert_array_equal(bus_only[5], G.footprint(rows[:1]))
    assert bus_only[3 + 3].sum() == 0  # pedestrian channel empty when the pedestrian is masked
    # Heading channels carry cos / sin inside the box; the centre channel peaks at the bus centre.
    inside = bus_only[0] > 0
    np.testing.assert_allclose(bus_only[1][inside], np.cos(0.5), rtol=1e-6)
    np.testing.assert_allclose(bus_only[2][inside], np.sin(0.5), rtol=1e-6)
    r, c = np.unravel_index(np.argmax(bus_only[-1]), bus_only[-1].shape)
    assert abs((G.H / 2 - (r + 0.5)) - 10.3) <= 0.5 and abs((G.W / 2 - (c + 0.5)) - (-5.2)) <= 0.5
    # No tokens: nothing is drawn (the unconditional branch of guidance sees an empty raster).
    assert rasterize_tokens(tok, torch.zeros(1, 2, dtype=torch.bool)).abs().sum() == 0


def test_unet_output_depends_on_pins() -> None:
    torch.manual_seed(0)
    unet = LatentUNet(TINY).eval()
    rows = np.zeros((1, G.AGENT_COLS))
    rows[0, [G.A_CLS, G.A_X, G.A_Y, G.A_L, G.A_W]] = [1, 8.0, 0.0, 4.6, 1.85]
    tok = torch.zeros(1, 8, 14)
    tok[0, :1] = torch.from_numpy(agent_tokens(rows))
    args = (torch.randn(1, 4, 16, 16), torch.tensor([500]), torch.zeros(1, 9, 16, 16))
    glob = (torch.zeros(1, 2), torch.zeros(1, dtype=torch.bool))
    with torch.no_grad():
        on = unet(*args, tok, torch.tensor([[True] + [False] * 7]), *glob)
        off = unet(*args, tok, torch.zeros(1, 8, dtype=torch.bool), *glob)
    assert not torch.allclose(on, off)
    # Old weights (trained before the pin raster) still build without it.
    assert LatentUNet(ModelConfig(pin_raster=False)).pin is None


def test_pin_compliance_counts_pins(tiny_models, tiny_set) -> None:
    vae, unet, scale = tiny_models
    c = pin_compliance(vae, unet, scale, tiny_set, n_scenes=4, n_steps=3, n_diffusion=TINY.diffusion_steps)
    assert c["pins"] >= 4 and 0 <= c["found"] <= c["pins"]


def test_shipped_generator_answers_pins() -> None:
    """The shipped weights place pinned agents (2.2 m, 0.2 rad, same class) on unseen simulated scenes.

    Pins are 1-3 real agents of scenes from seeds never used in training. The bars (60 % with
    inpainting, 40 % with the learned conditioning alone) are well below the benchmark's 93 % / 71 %
    so that a regression, not noise, fails them.
    """
    from prescient.models.scenario_diffusion.data import agent_table

    torch.set_num_threads(1)
    gen = ScenarioGenerator.load()
    rng = np.random.default_rng(0)
    found = {True: 0, False: 0}
    total = 0
    for m, seed in (
        ("intersection", 990001),
        ("arterial", 990002),
        ("roundabout", 990003),
        ("t_junction", 990004),
    ):
        for sc in simulate_scenes(RunSpec(m, seed, 40, 6.0, 2, 0)):
            t = agent_table(sc)
            (pins,), tok, mask = pin_random_agents([t[G.in_window(t[:, G.A_X : G.A_Y + 1])]], rng)
            maps = gen.map_raster(m, sc.ego_pose)[None]
            for inpaint in (True, False):
                out = gen.generate_tables(maps, tok, mask, None, seed=seed, inpaint_pins=inpaint)[0]
                found[inpaint] += int((match_pins(pins, out[:, : G.AGENT_COLS]) >= 0).sum())
            total += len(pins)
    assert total >= 8
    assert found[True] / total >= 0.6, f"inpainted: {found[True]}/{total} pins found"
    assert found[False] / total >= 0.4, f"learned only: {found[False]}/{total} pins found"


def test_train_command_runs_end_to_end(tiny_set, tmp_path) -> None:
    """The documented training command parses its flags, trains both stages and writes loadable weights."""
    from prescient.models.scenario_diffusion.train import main as train_main

    arrays = {"agents": tiny_set.agents, "offsets": tiny_set.offsets, "ego_pose": tiny_set.ego_pose,
              "map_index": tiny_set.map_index, "ego_speed_mps": tiny_set.ego_speed_mps}  # fmt: skip
    np.savez(tmp_path / "d.npz", **arrays)
    out = tmp_path / "w.pt"
    d = str(tmp_path / "d.npz")
    rc = train_main(["--train", d, "--heldout", d, "--out", str(out), "--vae-minutes", "0.002", "--diffusion-minutes",
                     "0.002", "--checkpoint-minutes", "5", "--turn-p", "0.3", "--threads", "1"])  # fmt: skip
    assert rc == 0
    gen = ScenarioGenerator.load(out)
    assert gen.cfg.pin_latent and gen.info["n_train_scenes"] == len(tiny_set)
    assert (
        0 <= gen.info["heldout_pin_compliance_96"]["found"] <= gen.info["heldout_pin_compliance_96"]["pins"]
    )


def test_turn_agents_rotates_heading_and_trajectory_in_place() -> None:
    t = np.zeros((3, G.AGENT_COLS))
    t[:, G.A_X], t[:, G.A_YAW] = [5.0, 10.0, 15.0], 0.3
    t[:, G.A_FDX], t[:, G.A_FDY] = 4.0 * np.cos(0.3), 4.0 * np.sin(0.3)  # moving along its heading
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(turn_agents(t, rng, 0.0), t)
    u = turn_agents(t, rng, 1.0)
    np.testing.assert_array_equal(u[:, G.A_X], t[:, G.A_X])  # positions kept
    for r in u:  # the +2 s displacement still points along the (new) heading, same length
        assert np.hypot(r[G.A_FDX], r[G.A_FDY]) == pytest.approx(4.0)
        assert np.arctan2(r[G.A_FDY], r[G.A_FDX]) == pytest.approx(r[G.A_YAW], abs=1e-9)
    assert not np.allclose(u[:, G.A_YAW], t[:, G.A_YAW])
