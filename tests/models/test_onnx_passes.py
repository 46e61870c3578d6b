"""factor-edges (models/onnx_passes.py): an export of the older attention form, rewritten, computes
the same outputs without the edge-value Einsum."""

from __future__ import annotations

import math
from pathlib import Path

import onnx
import pytest
import torch

from prescient.models.net import MASK_LOGIT, EdgeAttention
from prescient.models.onnx_passes import PassError, factor_file


def _einsums(path: Path) -> int:
    return sum(n.op_type == "Einsum" for n in onnx.load(str(path)).graph.node)


def _older_forward(self, x, edges, key_mask):  # noqa: ANN001, ANN202 - the form exports had before
    b, m, d = x.shape
    q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
    q = q.reshape(b, m, self.h, self.dh).transpose(1, 2)
    k = k.reshape(b, m, self.h, self.dh).transpose(1, 2)
    v = v.reshape(b, m, self.h, self.dh).transpose(1, 2)
    e = self.edge(edges)
    bias = e[..., : self.h].permute(0, 3, 1, 2)
    ev = e[..., self.h :].reshape(b, m, m, self.h, self.dh)
    logits = q @ k.transpose(-1, -2) / math.sqrt(self.dh) + bias
    logits = logits + (1.0 - key_mask)[:, None, None, :] * MASK_LOGIT
    attn = torch.softmax(logits, dim=-1)
    out = attn @ v
    out = out + torch.einsum("bhij,bijhc->bhic", attn, ev)
    out = out.transpose(1, 2).reshape(b, m, d)
    x = x + self.out(out)
    return x + self.ffn(self.norm2(x))


def test_an_older_export_is_rewritten_to_the_same_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prescient.models.export_tiny import write_tiny_onnx

    monkeypatch.setattr(EdgeAttention, "forward", _older_forward)
    old, _ = write_tiny_onnx(tmp_path / "old", num_layers=2)
    monkeypatch.undo()
    assert _einsums(old) == 2
    out = tmp_path / "f.onnx"
    manifest = factor_file(old, out)
    assert _einsums(out) == 0
    assert manifest["pass_parity_max_abs"] <= 1e-4
    assert manifest["graph_passes"] == ["factor_edge_values"] and manifest["precision"] == "fp32"
    # A second pass finds nothing to do and says so, writing nothing.
    with pytest.raises(PassError, match="no edge-value Einsum"):
        factor_file(out, tmp_path / "g.onnx")
    assert not (tmp_path / "g.onnx").exists()


def test_todays_export_has_nothing_to_rewrite(tmp_path: Path) -> None:
    from prescient.models.export_tiny import write_tiny_onnx

    onnx_path, _ = write_tiny_onnx(tmp_path)
    assert _einsums(onnx_path) == 0
    with pytest.raises(PassError):
        factor_file(onnx_path, tmp_path / "x.onnx")
