"""Int8 static quantisation (QDQ) of the exported net, calibrated on simulator samples.

``prescient quantize --model M.onnx --calib DIR --out M_int8.onnx`` runs onnxruntime's
``quantize_static`` in QDQ format (activations uint8, weights int8, per output channel by default:
the u8s8 kernels of the AVX-512 VNNI / AMX CPUs) on the float model written by
:mod:`prescient.models.export`. Inputs and outputs stay float32, so
:class:`prescient.service.predictor.OnnxPredictor` checks and runs the result like the float model.

Calibration: ``num_samples`` scenes drawn with ``seed`` from the shards of ``prescient data
generate`` in ``calib_dir`` (raster, agent inputs and the simulator's route as ego plan, what a
plain tick passes). Runs from the held-out evaluation seeds (:data:`HELD_OUT_SEEDS`) are refused.

The quantised file gets its own manifest next to it: the float manifest's contract (inputs,
outputs, ``model_config``, raster spec) with the new file's name, sha256 and size,
``"precision": "int8"`` and the calibration settings under ``"quantization"``.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prescient.models.sim_data import SimDataError, list_shards, load_shard
from prescient.service.model_io.config import INPUT_NAMES, ModelConfig
from prescient.service.model_io.features import AgentInputs
from prescient.service.model_io.manifest import manifest_path_for, sha256_file

log = logging.getLogger(__name__)

PRECISION_FP32 = "fp32"
PRECISION_INT8 = "int8"
# Seeds of the held-out evaluation set (model card); calibrating on them would leak into the scores.
HELD_OUT_SEEDS = range(100, 105)
RUN_SEED = re.compile(r"_s(\d+)$")


class QuantizeError(ValueError):
    """Calibration data or options the quantiser cannot use."""


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantise.

    Attributes:
        num_samples: calibration scenes, drawn with ``seed`` from all shards.
        seed: sample choice.
        per_channel: one weight scale per output channel (else per tensor).
        op_types: operator types to quantise; empty = onnxruntime's default set.
        exclude: glob patterns on node names kept in float (e.g. ``/head/*``).
        calibrate_method: ``minmax``, ``entropy`` or ``percentile``.
        preprocess: run ``quant_pre_process`` (shape inference, graph clean-up) first.
    """

    num_samples: int = 64
    seed: int = 0
    per_channel: bool = True
    op_types: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    calibrate_method: str = "minmax"
    preprocess: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _run_seed(run_name: str) -> int | None:
    match = RUN_SEED.search(run_name)
    return int(match.group(1)) if match else None


def calibration_samples(
    calib_dir: Path, num_samples: int, seed: int, allow_held_out: bool = False
) -> list[tuple[Path, int]]:
    """Seeded choice of ``num_samples`` (shard, index) pairs over every shard of ``calib_dir``.

    ``allow_held_out``: accept runs of the held-out seeds (benchmark inputs, not calibration).

    Raises:
        QuantizeError: a shard from the held-out seeds, or no samples.
    """
    paths = list_shards(calib_dir)
    held = [p.stem for p in paths if _run_seed(p.stem) in HELD_OUT_SEEDS]
    if held and not allow_held_out:
        raise QuantizeError(f"calibration runs {held[:4]} come from the held-out evaluation seeds 100-104")
    pairs: list[tuple[Path, int]] = []
    for p in paths:
        pairs.extend((p, i) for i in range(load_shard(p).num_samples))
    if not pairs:
        raise QuantizeError(f"no samples in {calib_dir}")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(pairs), size=min(num_samples, len(pairs)), replace=False))
    return [pairs[int(k)] for k in pick]


def sample_feed(cfg: ModelConfig, shard: Any, i: int) -> dict[str, np.ndarray]:
    """Net inputs (batch 1) of sample ``i`` of a shard, with the route as ego plan (a plain tick)."""
    a = shard.arrays
    n = cfg.n_max
    valid = a["agent_valid"][i, :n] > 0
    inputs = AgentInputs(
        agent_hist=a["agent_hist"][i, :n],
        agent_state=a["agent_state"][i, :n],
        agent_valid=a["agent_valid"][i, :n],
        ego_state=a["ego_state_route"][i],
        ego_plan=a["ego_plan_route"][i],
        agent_index=np.where(valid, np.arange(n), -1),
        agent_pose_world=a["agent_pose_world"][i, :n],
        num_dropped=0,
    )
    feed = inputs.as_feed()
    feed["raster"] = shard.raster(i, route_plan=True)[None]
    return {k: np.ascontiguousarray(feed[k], np.float32) for k in INPUT_NAMES}


class ShardCalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over chosen shard samples (loads one shard at a time)."""

    def __init__(self, cfg: ModelConfig, samples: Sequence[tuple[Path, int]]) -> None:
        self.cfg = cfg
        self.samples = list(samples)
        self._next = 0
        self._shard_path: Path | None = None
        self._shard: Any = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next feed, or None at the end."""
        if self._next >= len(self.samples):
            return None
        path, i = self.samples[self._next]
        self._next += 1
        if path != self._shard_path:
            self._shard, self._shard_path = load_shard(path), path
        return sample_feed(self.cfg, self._shard, i)

    def rewind(self) -> None:
        """Start over."""
        self._next = 0

    def __len__(self) -> int:
        return len(self.samples)


def nodes_matching(model_path: Path, patterns: Sequence[str]) -> list[str]:
    """Names of the graph's nodes matching any glob in ``patterns``."""
    if not patterns:
        return []
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [n.name for n in graph.node if any(fnmatch.fnmatchcase(n.name, p) for p in patterns)]


def derived_manifest(
    base: dict[str, Any], onnx_path: Path, precision: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest of a file derived from ``base``'s model (same contract), written next to it.

    ``file``, ``sha256``, ``size_bytes`` and ``model_id`` describe ``onnx_path``; ``precision`` is set;
    ``extra`` is merged in (e.g. ``quantization``).
    """
    digest = sha256_file(onnx_path)
    manifest = dict(base)
    manifest.update(
        file=onnx_path.name,
        sha256=digest,
        size_bytes=onnx_path.stat().st_size,
        model_id=f"{onnx_path.stem}-{digest[:12]}",
        precision=precision,
        **(extra or {}),
    )
    manifest_path_for(onnx_path).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def quantize_onnx(
    model_path: str | Path,
    out_path: str | Path,
    reader: Any,
    opts: QuantizeOptions | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Quantise ``model_path`` to int8 QDQ at ``out_path``, calibrated on ``reader``; writes its manifest.

    Args:
        model_path: float ``.onnx`` with its manifest beside it.
        out_path: destination ``.onnx``.
        reader: an onnxruntime ``CalibrationDataReader`` (``get_next`` returns a feed, then None).
        opts: options (``num_samples`` and ``seed`` are the reader's business, recorded only).
        calibration: what the reader read, stored in the manifest's ``quantization``.

    Returns:
        The new manifest.

    Raises:
        QuantizeError: bad options, or a float model that disagrees with its manifest.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    opts = opts or QuantizeOptions()
    model_path, out_path = Path(model_path), Path(out_path)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if opts.calibrate_method not in methods:
        raise QuantizeError(f"calibrate_method {opts.calibrate_method!r}, expected one of {sorted(methods)}")
    base = json.loads(manifest_path_for(model_path).read_text())
    if sha256_file(model_path) != base["sha256"]:
        raise QuantizeError(f"{model_path} does not match its manifest's sha256")
    if base.get("precision", PRECISION_FP32) != PRECISION_FP32:
        raise QuantizeError(f"{model_path} is already {base['precision']}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = model_path
        if opts.preprocess:
            src = Path(tmp) / "pre.onnx"
            quant_pre_process(str(model_path), str(src), skip_symbolic_shape=False)
        exclude = nodes_matching(src, opts.exclude)  # names after pre-processing
        quantize_static(
            str(src),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=opts.per_channel,
            op_types_to_quantize=list(opts.op_types) or None,
            nodes_to_exclude=exclude or None,
            calibrate_method=methods[opts.calibrate_method],
            extra_options=dict(opts.extra),
        )
    meta = asdict(opts)
    meta.update(
        op_types=list(opts.op_types),
        exclude=list(opts.exclude),
        excluded_nodes=len(exclude),
        format="QDQ",
        activations="uint8",
        weights="int8",
        source_sha256=base["sha256"],
        **(calibration or {}),
    )
    manifest = derived_manifest(base, out_path, PRECISION_INT8, {"quantization": meta})
    log.info("wrote %s (%.2f MB)", out_path, manifest["size_bytes"] / 1e6)
    return manifest


def quantize_model(
    model_path: str | Path, out_path: str | Path, calib_dir: str | Path, opts: QuantizeOptions | None = None
) -> dict[str, Any]:
    """:func:`quantize_onnx` calibrated on ``opts.num_samples`` seeded scenes of the shards in ``calib_dir``.

    Raises:
        QuantizeError: as :func:`quantize_onnx`; calibration data of another raster spec or from
            the held-out seeds.
    """
    opts = opts or QuantizeOptions()
    base = json.loads(manifest_path_for(Path(model_path)).read_text())
    cfg = ModelConfig.from_dict(base["model_config"])
    try:
        samples = calibration_samples(Path(calib_dir), opts.num_samples, opts.seed)
    except SimDataError as e:
        raise QuantizeError(str(e)) from e
    spec = str(load_shard(samples[0][0]).meta["raster_spec"])
    if spec != cfg.raster_spec_version:
        raise QuantizeError(
            f"calibration data has raster spec {spec!r}, the model {cfg.raster_spec_version!r}"
        )
    calibration = {
        "calibration_runs": sorted({p.stem for p, _ in samples}),
        "calibration_samples": len(samples),
    }
    return quantize_onnx(model_path, out_path, ShardCalibrationReader(cfg, samples), opts, calibration)
