"""Recovering a fine-tunable checkpoint from an exported float ONNX file (`recover-checkpoint`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from prescient.models.export import export_onnx, load_checkpoint, onnx_parity
from prescient.models.export_tiny import build_tiny_model
from prescient.models.net import TrajectoryNet
from prescient.models.recover import RecoverError, check_parity, estimate_batchnorm, recover_net
from prescient.service.app.cli import main
from prescient.service.model_io.manifest import manifest_path_for

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "shipped" / "prescient.onnx"


def _trained_like(**overrides: object) -> TrajectoryNet:
    """A tiny net whose weights are all distinct and whose BatchNorms are not the identity, as
    after training (an untrained net's equal LayerNorm weights are merged by the exporter)."""
    net = build_tiny_model(seed=3, **overrides)
    torch.manual_seed(4)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 2.0)
    return net.eval()


def _rasters(net: TrajectoryNet, n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c, (h, w) = net.cfg.in_channels, net.cfg.raster_hw
    return [(torch.rand(2, c, h, w, generator=g) < 0.1).float() for _ in range(n)]


@pytest.mark.parametrize("options", [{}, {"decoder": "basis", "plan_attention": True}])
def test_recovered_weights_reproduce_the_export(tmp_path, options):
    """Every non-convolution weight comes back bit for bit, and the whole function to 1e-4."""
    net = _trained_like(**options)
    path = tmp_path / "m.onnx"
    export_onnx(net, path, dynamic_agents=True)
    got = recover_net(path)
    assert check_parity(got, path) <= 1e-4
    ref = dict(net.named_parameters())
    for name, p in got.named_parameters():
        if "stem" not in name and "stages" not in name:
            assert torch.equal(p, ref[name]), name


def test_batchnorm_statistics_keep_the_function_and_match_training_mode(tmp_path):
    """With statistics from rasters the eval-mode function is unchanged, and training mode (batch
    statistics) is close to it, unlike the identity BatchNorms it starts from."""
    net = _trained_like()
    path = tmp_path / "m.onnx"
    export_onnx(net, path)
    got = recover_net(path)
    xs = _rasters(got, 6)

    def features(model: TrajectoryNet, train: bool) -> torch.Tensor:
        model.train(train)
        with torch.no_grad():
            y = model.stem(xs[0])
            for stage in model.stages:
                y = stage(y)
        model.eval()
        return y

    def gap() -> float:
        a, b = features(got, True), features(got, False)
        return float((a - b).abs().mean() / b.abs().mean())

    before = gap()
    assert estimate_batchnorm(got, xs) == 12
    assert onnx_parity(got, path) <= 1e-4
    assert gap() < before / 2
    with pytest.raises(RecoverError, match="no rasters"):
        estimate_batchnorm(got, [])


def test_refuses_a_file_of_another_config(tmp_path):
    """A manifest whose config does not match the graph is refused, with the reason."""
    path = tmp_path / "m.onnx"
    export_onnx(_trained_like(), path)
    man_path = manifest_path_for(path)
    man = json.loads(man_path.read_text())
    man["model_config"]["d_model"] = 2 * man["model_config"]["d_model"]
    man_path.write_text(json.dumps(man))
    with pytest.raises(RecoverError, match="differ from a float export"):
        recover_net(path)
    man_path.unlink()
    with pytest.raises(RecoverError, match="no manifest"):
        recover_net(path)


def test_cli_writes_a_checkpoint_train_sim_can_start_from(tmp_path, capsys):
    """`prescient recover-checkpoint` writes a checkpoint that loads into the same function;
    a missing model is one line and exit 1."""
    path = tmp_path / "m.onnx"
    export_onnx(_trained_like(decoder="basis", plan_attention=True), path, dynamic_agents=True)
    out = tmp_path / "ck" / "best.pt"
    assert main(["recover-checkpoint", "--model", str(path), "--out", str(out)]) == 0
    assert "parity" in capsys.readouterr().out
    loaded, meta = load_checkpoint(out)
    assert meta["recovered_from"]["sha256"] and meta["batchnorm_rasters"] == 0
    assert onnx_parity(loaded, path) <= 1e-4
    assert main(["recover-checkpoint", "--model", str(path), "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    missing = str(tmp_path / "none.onnx")
    assert main(["recover-checkpoint", "--model", missing, "--out", str(tmp_path / "x.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.onnx" in err[0]


def test_shipped_model_is_recoverable():
    """The shipped float model gives back a net that reproduces it (what a fine-tune starts from)."""
    if not SHIPPED.is_file():
        pytest.skip("no shipped model")
    assert check_parity(recover_net(SHIPPED), SHIPPED) <= 1e-4
