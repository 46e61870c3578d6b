"""Recover a training checkpoint from an exported float ONNX file of a :class:`TrajectoryNet`.

Why: a shipped model is an ONNX file; fine-tuning it (``train-sim --init-from``) needs the PyTorch
weights, which live only where it was trained. The export is a fixed function of the weights
(transposes, slices and reshapes of parameters, BatchNorm folded into the convolutions), so the
weights can be read back:

1. A fresh net of the manifest's config, every parameter filled with distinct random values and
   every BatchNorm given random statistics, is exported the same way (:func:`export_onnx`).
2. Each element of each initializer of that probe export is looked up by value among the
   parameters: a hit gives the (parameter, index) the element was copied from.
3. The same initializer of the real file then supplies that element of the real parameter.
   Folded convolutions (no hit: their weights are scaled by BatchNorm) take the real file's
   weight and bias as they are, with the BatchNorm after them set to the identity
   (``gamma = 1, beta = 0, mean = 0, var = 1 - eps``); ``estimate_batchnorm`` can then give those
   BatchNorms the statistics of real rasters without changing the function.
4. The recovered net is exported to a temporary file and checked against the original on
   seeded inputs (:func:`prescient.models.export.onnx_parity`): anything the probe could not
   explain raises :class:`RecoverError` instead of returning a different function.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from prescient.models.export import export_onnx, onnx_parity, save_checkpoint
from prescient.models.net import TrajectoryNet
from prescient.models.shards import list_shards, load_shard, read_meta
from prescient.models.sim_runs import is_held_out
from prescient.service.model_io.config import ModelConfig
from prescient.service.model_io.manifest import manifest_path_for, sha256_file

PARITY_TOL = 1e-4  # metres / logits: float reassociation only


class RecoverError(ValueError):
    """The file is not an export of this net, or the recovered weights do not reproduce it."""


def _probe_net(cfg: ModelConfig, seed: int) -> TrajectoryNet:
    """A net whose parameters hold distinct values (exact lookup) and BatchNorms random stats."""
    torch.manual_seed(seed)
    net = TrajectoryNet(cfg)
    params = list(net.parameters())
    total = sum(p.numel() for p in params)
    # Distinct float32 values in [-1, 1): a permutation of an evenly spaced grid.
    values = (torch.randperm(total, dtype=torch.float64) / total * 2 - 1).float()
    off = 0
    with torch.no_grad():
        for p in params:
            p.copy_(values[off : off + p.numel()].reshape(p.shape))
            off += p.numel()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand_like(m.running_mean) - 0.5)
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
    return net.eval()


def _initializers(path: Path) -> tuple[dict[str, np.ndarray], list[onnx.NodeProto]]:
    model = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}, list(model.graph.node)


def _folded_convs(nodes: list[onnx.NodeProto]) -> list[tuple[str, str]]:
    """(weight, bias) initializer names of every Conv node, in graph order."""
    return [(n.input[1], n.input[2]) for n in nodes if n.op_type == "Conv" and len(n.input) > 2]


def _conv_modules(net: TrajectoryNet) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Each convolution with the BatchNorm that follows it, in forward (= graph) order."""
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []
    pending: nn.Conv2d | None = None
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            pending = m
        elif isinstance(m, nn.BatchNorm2d) and pending is not None:
            pairs.append((pending, m))
            pending = None
    return pairs


def _copy_params(
    net: TrajectoryNet,
    probe_net: TrajectoryNet,
    probe: dict[str, np.ndarray],
    real: dict[str, np.ndarray],
    skip: set[str],
) -> None:
    """Fill ``net``'s parameters (but ``skip``) element by element: an element of a probe
    initializer equal to a probe parameter's element gives the real value of that element."""
    names = [n for n, _ in probe_net.named_parameters()]
    flat = {n: p.detach().numpy().reshape(-1).copy() for n, p in probe_net.named_parameters()}
    where: dict[int, tuple[str, int]] = {}
    for n in names:
        for i, bits in enumerate(flat[n].view(np.uint32)):
            where[int(bits)] = (n, i)
    filled = {n: np.zeros(flat[n].size, bool) for n in names}
    out = {n: np.zeros_like(flat[n]) for n in names}
    for key, arr in probe.items():
        if key in skip or arr.dtype != np.float32:
            continue
        if np.array_equal(arr, real[key]):
            # The same in both files: a constant of the graph (basis, bounds), not a weight (a
            # weight of the real file never equals the probe's). Its values may by chance equal
            # some probe weights, so it is not looked up.
            continue
        hits = [where.get(int(b)) for b in arr.reshape(-1).view(np.uint32)]
        if any(h is None for h in hits):
            raise RecoverError(f"initializer {key!r} differs from the probe's and is not a copy of weights")
        src = real[key].reshape(-1)
        for j, (n, i) in enumerate(h for h in hits if h is not None):
            out[n][i] = src[j]
            filled[n][i] = True
    for n, p in net.named_parameters():
        if n in skip:
            continue
        if not filled[n].all():
            raise RecoverError(f"parameter {n!r}: {int((~filled[n]).sum())} values not found in the file")
        with torch.no_grad():
            p.copy_(torch.from_numpy(out[n].reshape(p.shape)))


def recover_net(onnx_path: Path, seed: int = 0) -> TrajectoryNet:
    """The TrajectoryNet (eval mode) whose export is ``onnx_path`` (float export with manifest).

    Raises:
        RecoverError: not an export of this architecture, or the parity check fails.
    """
    man_path = manifest_path_for(onnx_path)
    if not man_path.is_file():
        raise RecoverError(f"{onnx_path}: no manifest {man_path.name} next to it")
    manifest = json.loads(man_path.read_text())
    cfg = ModelConfig.from_dict(manifest["model_config"])
    dynamic_agents = any(
        not isinstance(i["shape"][1], int) for i in manifest["inputs"] if i["name"] == "agent_valid"
    )
    probe_net = _probe_net(cfg, seed)
    with tempfile.TemporaryDirectory() as tmp:
        probe_path = Path(tmp) / "probe.onnx"
        export_onnx(probe_net, probe_path, opset=int(manifest["opset"]), dynamic_agents=dynamic_agents)
        probe, probe_nodes = _initializers(probe_path)
    real, real_nodes = _initializers(onnx_path)
    odd = sorted({(k, v.shape) for k, v in probe.items()} ^ {(k, v.shape) for k, v in real.items()})
    if odd:
        raise RecoverError(
            f"{onnx_path}: its initializers differ from a float export of its config, e.g. {odd[0][0]!r} "
            "(an int8 or rewritten file, or one with equal weight tensors the exporter merged)"
        )
    net = TrajectoryNet(cfg).eval()
    convs = _conv_modules(net)
    folded = _folded_convs(real_nodes)
    if len(folded) != len(convs) or folded != _folded_convs(probe_nodes):
        raise RecoverError(f"{onnx_path}: {len(folded)} folded convolutions, the net has {len(convs)}")
    in_convs = {id(q) for c, b in convs for q in (*c.parameters(), *b.parameters())}
    skip = {n for n, p in net.named_parameters() if id(p) in in_convs} | {n for pair in folded for n in pair}
    _copy_params(net, probe_net, probe, real, skip)
    with torch.no_grad():
        for (conv, bn), (w_name, b_name) in zip(convs, folded):
            conv.weight.copy_(torch.from_numpy(real[w_name].copy()))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(real[b_name].copy()))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
    check_parity(net, onnx_path)
    return net


def check_parity(net: TrajectoryNet, onnx_path: Path) -> float:
    """Max abs output difference between ``net`` and ``onnx_path``; RecoverError above tolerance."""
    worst = onnx_parity(net, onnx_path, seeds=(0, 1, 2), n_valid=min(17, net.cfg.n_max))
    if not worst <= PARITY_TOL:
        raise RecoverError(f"recovered weights differ from {onnx_path} by {worst:.3g} (> {PARITY_TOL})")
    return worst


@torch.no_grad()
def estimate_batchnorm(net: TrajectoryNet, rasters: Iterable[torch.Tensor]) -> int:
    """Give every BatchNorm the statistics of real activations, keeping the function.

    A BatchNorm set to the identity turns into a different function in training mode (it then
    normalises by the batch). With the per-channel mean ``m`` and variance ``v`` of its input over
    ``rasters``, ``running_mean = m, running_var = v, gamma = sqrt(v + eps), beta += m`` is the
    same function in eval mode and close to it in training mode.

    Args:
        net: a recovered net (eval mode; its BatchNorms as :func:`recover_net` left them).
        rasters: batches (B, C, H, W) float32 of the model's input rasters.

    Returns:
        The number of rasters seen.
    """
    bns = [bn for _, bn in _conv_modules(net)]
    sums = {id(bn): [0.0, 0.0, 0] for bn in bns}

    def hook(mod: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        z = args[0].double()
        acc = sums[id(mod)]
        acc[0] = acc[0] + z.sum((0, 2, 3))
        acc[1] = acc[1] + (z * z).sum((0, 2, 3))
        acc[2] += z.numel() // z.shape[1]

    handles = [bn.register_forward_pre_hook(hook) for bn in bns]
    seen = 0
    try:
        net.eval()
        for x in rasters:
            y = net.stem(x)
            for stage in net.stages:
                y = stage(y)
            seen += int(x.shape[0])
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise RecoverError("no rasters to estimate the BatchNorm statistics from")
    for bn in bns:
        s1, s2, n = sums[id(bn)]
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp(min=0.0)
        bn.bias.add_(mean.float())
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
        bn.weight.copy_(torch.sqrt(var + bn.eps).float())
    return seen


def training_rasters(
    data_dir: Path, samples: int, exclude: Collection[str] = (), batch: int = 8
) -> Iterator[torch.Tensor]:
    """Up to ``samples`` rasters, in batches (b, C, H, W), spread evenly over the runs of
    ``data_dir`` (as many runs as samples, one sample from each: runs differ more than ticks).

    Runs of held-out seeds and those named in ``exclude`` (the model's validation runs) are
    skipped, so the statistics never come from data the model is scored on.
    """
    paths = [
        p
        for p in list_shards(data_dir)
        if not is_held_out(int(read_meta(p)["seed"])) and p.stem not in exclude
    ]
    if not paths:
        raise RecoverError(f"{data_dir}: no training runs (held-out or validation runs only)")
    per_run = -(-samples // len(paths))
    picks = np.linspace(0, len(paths) - 1, min(samples, len(paths))).round().astype(int)
    buf: list[torch.Tensor] = []
    left = samples
    for j in picks:
        shard = load_shard(paths[j])
        for i in np.linspace(0, shard.num_samples - 1, min(per_run, left) + 2)[1:-1].round().astype(int):
            buf.append(torch.from_numpy(shard.raster(int(i))))
            left -= 1
            if len(buf) == batch:
                yield torch.stack(buf)
                buf = []
    if buf:
        yield torch.stack(buf)


def recover_checkpoint(
    onnx_path: Path, out: Path, data_dir: Path | None, samples: int = 64
) -> dict[str, Any]:
    """Recover ``onnx_path``'s weights (with BatchNorm statistics from ``data_dir`` when given)
    and write a ``train-sim`` checkpoint to ``out``; returns its meta."""
    net = recover_net(onnx_path)
    manifest = json.loads(manifest_path_for(onnx_path).read_text())
    val_runs = manifest.get("training", {}).get("val_runs", [])
    seen = 0
    if data_dir is not None:
        seen = estimate_batchnorm(net, training_rasters(data_dir, samples, exclude=val_runs))
    parity = check_parity(net, onnx_path)
    meta = {
        "recovered_from": {"model_id": manifest.get("model_id"), "sha256": sha256_file(onnx_path)},
        "batchnorm_rasters": seen,
        "parity_max_abs": parity,
        "training": manifest.get("training", {}),
    }
    save_checkpoint(out, net, meta)
    return meta
