"""``prescient calibrate``: temperature fitting recovers a known over-confidence."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

from prescient.models.calibrate import fit_temperature, nll  # noqa: E402
from prescient.service.model_io.calibration import temper  # noqa: E402


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_fit_recovers_the_temperature_that_made_probabilities_miscalibrated(true_t: float) -> None:
    """Outcomes drawn from calibrated p; the model reports p sharpened (or softened) by 1/T:
    the fit finds T again, and lowers the NLL."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1.5, (20000, 6))
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    closest = (rng.random((len(p), 1)) > p.cumsum(1)).sum(1)  # a draw from each row
    reported = temper(p, 1.0 / true_t)  # tempering that by true_t gives p back
    t = fit_temperature(reported, closest)
    assert t == pytest.approx(true_t, rel=0.05)
    assert nll(reported, closest, t) < nll(reported, closest, 1.0)


def test_calibrate_cli_without_data_is_one_line(tmp_path, capsys) -> None:
    """No shards (or no validation runs): exit 1, one line, the manifest untouched."""
    pytest.importorskip("torch")
    from prescient.models.export_tiny import write_tiny_onnx
    from prescient.service.app.cli import main

    onnx, manifest = write_tiny_onnx(tmp_path)
    before = manifest.read_text()
    (tmp_path / "empty").mkdir()
    assert main(["calibrate", "--model", str(onnx), "--data", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "calibrate" in err
    assert manifest.read_text() == before
