"""factor-edges (models/onnx_passes.py) on the shipped float model: same outputs, no Einsum."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from prescient.models.onnx_passes import PassError, factor_file
from prescient.service.app.paths import shipped_model_path

SHIPPED = shipped_model_path("fp32")


def _einsums(path: Path) -> int:
    return sum(n.op_type == "Einsum" for n in onnx.load(str(path)).graph.node)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped model not in this checkout")
def test_factored_graph_computes_the_same_outputs_without_the_einsum(tmp_path: Path) -> None:
    if _einsums(SHIPPED) == 0:
        pytest.skip("the shipped model is already factored")
    out = tmp_path / "f.onnx"
    manifest = factor_file(SHIPPED, out)
    assert _einsums(out) == 0
    assert manifest["pass_parity_max_abs"] <= 1e-4
    assert manifest["graph_passes"] == ["factor_edge_values"] and manifest["precision"] == "fp32"
    # A second pass finds nothing to do and says so.
    with pytest.raises(PassError, match="no edge-value Einsum"):
        factor_file(out, tmp_path / "g.onnx")
    assert not (tmp_path / "g.onnx").exists()


def test_an_unknown_graph_is_refused(tmp_path: Path) -> None:
    from prescient.models.export_tiny import write_tiny_onnx

    onnx_path, _ = write_tiny_onnx(tmp_path)  # exported from today's net: nothing to factor
    with pytest.raises(PassError):
        factor_file(onnx_path, tmp_path / "x.onnx")
