"""Graph rewrites of an exported TrajectoryNet, for files exported before the net changed.

``factor_edge_values``: in each interaction layer the edge MLP's last MatMul produced, per edge
``(i, j)``, a per-head bias and a value vector, and the value vectors were summed over ``j`` with
the attention weights (an Einsum over a (B, M, M, h, dh) tensor: the slowest node of the graph).
Because the attention weights of a row sum to one,

    sum_j attn_ij (W hid_ij + c) = W (sum_j attn_ij hid_ij) + c,

so the pass pools the MLP's hidden layer with the attention weights first and applies the value
weights once per token: the same function with the same weights, ~40 % less inference time on 2
CPU cores (``prescient bench infer``). :class:`prescient.models.net.EdgeAttention` computes it this
way since, so newer exports have no such Einsum and the pass leaves them alone.

The pass matches the node names ``torch.onnx.export`` gives this architecture
(``/layers.L/edge/edge.2/MatMul``, ``/layers.L/Einsum``, ...) and refuses (``PassError``) a graph
it does not recognise. :func:`factor_file` checks the result against the original with
onnxruntime on seeded inputs before writing anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from prescient.service.model_io.config import ModelConfig
from prescient.service.model_io.manifest import manifest_path_for
from prescient.service.model_io.sample_inputs import random_inputs

PARITY_TOL = 1e-4  # metres / logits; float reassociation only


class PassError(ValueError):
    """The graph is not the one the pass knows, or the rewrite changed the outputs."""


def _layer_nodes(graph: onnx.GraphProto, layer: int) -> dict[str, onnx.NodeProto] | None:
    """The nodes of layer ``layer`` the pass rewires, or None when the layer has no Einsum."""
    p = f"/layers.{layer}/"
    nodes = {n.name: n for n in graph.node}
    if p + "Einsum" not in nodes:
        return None
    want = [
        "edge/edge.2/MatMul",
        "edge/edge.2/Add",
        "Transpose_2",
        "Softmax",
        "Einsum",
        "Slice_3",
        "Slice_4",
        "Reshape_3",
    ]
    missing = [w for w in want if p + w not in nodes]
    if missing:
        raise PassError(f"layer {layer}: nodes {missing} not found: not a graph this pass knows")
    return {w: nodes[p + w] for w in want}


def factor_edge_values(model: onnx.ModelProto, num_heads: int, head_dim: int, num_layers: int) -> int:
    """Rewrite ``model`` in place (see the module docstring); returns the layers rewritten."""
    g = model.graph
    init = {i.name: i for i in g.initializer}
    remove: set[str] = set()
    replace: dict[str, list[onnx.NodeProto]] = {}
    done = 0
    for layer in range(num_layers):
        n = _layer_nodes(g, layer)
        if n is None:
            continue
        hid = n["edge/edge.2/MatMul"].input[0]
        w = numpy_helper.to_array(init[n["edge/edge.2/MatMul"].input[1]])  # (F, h + D)
        c = numpy_helper.to_array(init[n["edge/edge.2/Add"].input[0]])  # (h + D,)
        f = w.shape[0]
        if w.shape[1] != num_heads * (1 + head_dim):
            raise PassError(f"layer {layer}: edge output {w.shape[1]} != heads x (1 + head_dim)")
        t = f"fact{layer}_"
        consts = {
            "wb": w[:, :num_heads],
            "cb": c[:num_heads],
            "wv": w[:, num_heads:].reshape(f, num_heads, head_dim).transpose(1, 0, 2),  # (h, F, dh)
            "cv": c[num_heads:].reshape(num_heads, 1, head_dim),
        }
        for k, arr in consts.items():
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), t + k))
        p = f"/layers.{layer}/fact/"
        soft, ein = n["Softmax"].output[0], n["Einsum"]
        replace[ein.name] = [
            helper.make_node("MatMul", [hid, t + "wb"], [t + "bias_mm"], name=p + "bias_MatMul"),
            helper.make_node("Add", [t + "bias_mm", t + "cb"], [t + "bias"], name=p + "bias_Add"),
            helper.make_node("Transpose", [soft], [t + "attn_t"], perm=[0, 2, 1, 3], name=p + "attn_T"),
            helper.make_node("MatMul", [t + "attn_t", hid], [t + "pooled"], name=p + "pool_MatMul"),
            helper.make_node("Transpose", [t + "pooled"], [t + "pooled_t"], perm=[0, 2, 1, 3], name=p + "pool_T"),
            helper.make_node("MatMul", [t + "pooled_t", t + "wv"], [t + "ev"], name=p + "value_MatMul"),
            helper.make_node("Add", [t + "ev", t + "cv"], [ein.output[0]], name=p + "value_Add"),
        ]  # fmt: skip
        n["Transpose_2"].input[0] = t + "bias"  # the bias now comes from its own MatMul
        remove |= {
            n[k].name
            for k in ("edge/edge.2/MatMul", "edge/edge.2/Add", "Slice_3", "Slice_4", "Reshape_3", "Einsum")
        }
        done += 1
    if not done:
        return 0
    out: list[onnx.NodeProto] = []
    for node in g.node:
        out.extend(replace.get(node.name, []))
        if node.name not in remove:
            out.append(node)
    _set_nodes_sorted(g, out)
    live = _live_nodes(g, list(g.node))
    del g.node[:]
    g.node.extend(live)
    used = {i for node in g.node for i in node.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(model)
    return done


def _live_nodes(g: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Topologically sorted ``nodes`` without those whose outputs nothing reads (the removed
    nodes' constant inputs)."""
    needed = {o.name for o in g.output}
    keep: list[onnx.NodeProto] = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed |= set(n.input)
    return keep[::-1]


def _set_nodes_sorted(g: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Put ``nodes`` into ``g`` in an order where every input is produced before it is used."""
    produced = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    ordered, pending = [], nodes
    while pending:
        ready = [n for n in pending if all(i in produced for i in n.input)]
        if not ready:
            raise PassError(f"graph has a cycle or a missing input near {pending[0].name}")
        for n in ready:
            produced |= set(n.output)
        ordered += ready
        pending = [n for n in pending if n not in ready]
    del g.node[:]
    g.node.extend(ordered)


def factor_file(src: Path, dst: Path) -> dict[str, Any]:
    """Write ``src`` with :func:`factor_edge_values` applied to ``dst`` and its manifest.

    Raises:
        PassError: unknown graph, nothing to rewrite, or outputs differ by more than
            :data:`PARITY_TOL` on seeded inputs (nothing is written then).
    """
    from prescient.models.quantize import derived_manifest

    base = json.loads(manifest_path_for(src).read_text())
    cfg = ModelConfig.from_dict(base["model_config"])
    model = onnx.load(str(src))
    layers = factor_edge_values(model, cfg.num_heads, cfg.d_model // cfg.num_heads, cfg.num_layers)
    if layers == 0:
        raise PassError(f"{src.name}: no edge-value Einsum to factor (already factored?)")
    diff = _parity(onnx.load(str(src)), model, cfg)
    if diff > PARITY_TOL:
        raise PassError(f"{src.name}: factored outputs differ by {diff:.2e} > {PARITY_TOL:g}")
    onnx.save(model, str(dst))
    extra = {
        "derived_from": base["sha256"],
        "graph_passes": ["factor_edge_values"],
        "pass_parity_max_abs": diff,
    }
    return derived_manifest(base, dst, str(base.get("precision", "fp32")), extra)


def _parity(a: onnx.ModelProto, b: onnx.ModelProto, cfg: ModelConfig) -> float:
    """Largest output difference of two graphs on seeded inputs (100 valid agents)."""
    import onnxruntime as ort

    feed = random_inputs(cfg, 1, seed=0, n_valid=min(100, cfg.n_max))
    runs = [
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
        for m in (a, b)
    ]
    return float(max(np.abs(x - y).max() for x, y in zip(*runs)))
