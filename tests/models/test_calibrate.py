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


def _top_label_data(rng: np.random.Generator, n: int, runs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of 6 probabilities whose top mode is the closest with chance sigmoid(1.8 logit(p)):
    over-confident below p = 0.5 and under-confident above, the other modes equally likely;
    and a run id per row."""
    x = rng.normal(0, 1.5, (n, 6))
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    top = p.argmax(1)
    q = p[np.arange(n), top]
    hit = rng.random(n) < 1 / (1 + np.exp(-1.8 * np.log(q / (1 - q))))
    other = (top + rng.integers(1, 6, n)) % 6
    return p, np.where(hit, top, other), rng.integers(0, runs, n)


def test_logistic_map_straightens_a_curve_a_temperature_cannot() -> None:
    """Fitted on one draw, scored on another: the map's ECE is a fraction of temperature alone."""
    from prescient.models.calibrate import _ece_mapped, fit_logistic_map

    p, closest, _ = _top_label_data(np.random.default_rng(1), 20000, 10)
    t = fit_temperature(p, closest)
    values = fit_logistic_map(temper(p, t), closest)
    assert np.all(np.diff(values) >= 0) and values.min() >= 0 and values.max() <= 1
    fresh_p, fresh_c, _ = _top_label_data(np.random.default_rng(2), 20000, 10)
    fresh = temper(fresh_p, t)
    assert _ece_mapped(fresh, fresh_c, values) < 0.3 * _ece_mapped(fresh, fresh_c, None)


def test_choose_top_map_by_split_runs() -> None:
    """Miscalibrated top labels: a map is chosen and its split ECE beats temperature alone.
    Outcomes drawn from the probabilities themselves: whatever is chosen stays near the identity
    (a map can only fit noise). Too few agents: temperature alone, no split."""
    from prescient.models.calibrate import TOP_MAP_FITS, TOP_MAP_KNOTS, choose_top_map

    rng = np.random.default_rng(3)
    p, closest, runs = _top_label_data(rng, 20000, 12)
    choice, means = choose_top_map(p, closest, runs)
    assert choice in TOP_MAP_FITS and means[choice] < 0.5 * means["none"]

    x = rng.normal(0, 1.5, (20000, 6))
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    closest = (rng.random((len(p), 1)) > p.cumsum(1)).sum(1)
    choice, means = choose_top_map(p, closest, rng.integers(0, 12, len(p)))
    assert set(means) == {"none", *TOP_MAP_FITS}
    if choice != "none":
        values = TOP_MAP_FITS[choice](temper(p, fit_temperature(p, closest)), closest)
        mid = (TOP_MAP_KNOTS >= 0.3) & (TOP_MAP_KNOTS <= 0.9)
        assert np.abs(values[mid] - TOP_MAP_KNOTS[mid]).max() < 0.05
    assert choose_top_map(p[:100], closest[:100], runs[:100]) == ("none", {})
