"""Onboard predictor: the exported net under onnxruntime (no torch), plus the physics fallback.

Load-time checks (fail fast, one clear line via :class:`prescient.bus.errors.StartupError`): the ONNX file's
sha256, the session's input/output names, shapes and dtypes, and the raster spec version all must
match the manifest written by :mod:`prescient.models.export`. The provider actually in use is read back from
``session.get_providers()``: onnxruntime-gpu silently falls back to CPU when CUDA cannot start, and
``get_available_providers()`` only lists what was compiled in. :func:`select_providers` picks the
providers to ask for: TensorRT, then CUDA, then the CPU (always last), each only when present.

The manifest's ``precision`` (``fp32`` when absent, ``int8`` for a file written by
:mod:`prescient.models.quantize`) is exposed as ``OnnxPredictor.precision``. ``session.run`` wraps
contiguous float32 CPU inputs without copying them, so the raster is not copied per tick (an IO
binding measured no faster: ``prescient bench infer``).

Per tick: ``predict(raster, inputs)`` runs one pass for the whole scene and returns world-frame
trajectories. :func:`constant_velocity_predictions` is the fallback when the model is missing or
late; the service marks those predictions ``degraded``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from prescient.bus.errors import StartupError
from prescient.service.model_io.baselines import constant_velocity_predictions
from prescient.service.model_io.calibration import (
    calibrate_probs,
    temperatures_from_manifest,
    top_maps_from_manifest,
)
from prescient.service.model_io.config import INPUT_NAMES, OUTPUT_NAMES, ModelConfig
from prescient.service.model_io.features import (
    AgentInputs,
    agent_inputs_from_tracks,
    world_from_agent_predictions,
)
from prescient.service.model_io.manifest import manifest_path_for, sha256_file
from prescient.service.model_io.providers import DEFAULT_PROVIDERS, TENSORRT_PROVIDER, select_providers
from prescient.service.tracks import TrackSnapshot

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

__all__ = [
    "ModelLoadError",
    "OnnxPredictor",
    "PredictionInputError",
    "PredictorOutput",
    "constant_velocity_predictions",
    "select_providers",
]

DEFAULT_PRECISION = "fp32"  # a manifest without "precision" describes a float model
# Agents one pass of a model with a symbolic agent axis takes (a fixed axis: its ``n_max`` slots).
# Measured on a 400-agent simulator log (README, "Service and planner stub"): the agents the model
# predicted at 128 per pass keep their 8 s minFDE (2.066 -> 2.065 m, taking 192), the 7 % of samples
# it then left on constant velocity go from 5.29 to 2.44 m. In the live stack, 400 simulated agents
# (152-160 tracked), 192 against 144 alternated over 3 runs each: processing p99 40.8-43.4 against
# 37.6-42.9 ms (within the run-to-run noise), every agent from the model instead of 93 %.
SYMBOLIC_AGENTS_PER_PASS = 192
OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class ModelLoadError(StartupError):
    """The model file or its manifest is missing, corrupt or disagrees with the other."""


class PredictionInputError(ValueError):
    """A per-tick input the model cannot take (wrong shape, non-finite); counted, not fatal."""


@dataclass(frozen=True, eq=False)
class PredictorOutput:
    """World-frame predictions for the caller's agents, in the caller's order.

    Attributes:
        trajectories_m: (N, K, T, 2) float32 world frame, first step ``dt_s`` after now.
        mode_probs: (N, K) float32 rows sum to 1.
        scale_m: (N, K, T, 2) float32 Laplace scales (> 0), world axes.
        from_model: (N,) bool; False for agents beyond ``n_max`` that got constant velocity.
        infer_ns: duration of ``session.run``.
    """

    trajectories_m: Float32Array
    mode_probs: Float32Array
    scale_m: Float32Array
    from_model: npt.NDArray[np.bool_]
    infer_ns: int


def _load_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelLoadError(f"model manifest not found: {path}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"model manifest {path} is not valid JSON: {e}") from e
    missing = [
        k for k in ("sha256", "inputs", "outputs", "model_config", "raster_spec_version") if k not in manifest
    ]
    if missing:
        raise ModelLoadError(f"model manifest {path} lacks keys {missing}")
    return manifest


class Predictor(Protocol):
    """What the pipeline needs of a model: its contract, its name, and one call per tick.

    :class:`OnnxPredictor` is the one used on the vehicle; tests pass fakes.
    """

    cfg: ModelConfig
    model_id: str
    provider: str

    def predict(
        self,
        raster: np.ndarray,
        tracks: TrackSnapshot,
        ego_velocity_mps: np.ndarray,
        ego_size_lwh_m: np.ndarray,
        plan_xy_m: np.ndarray | None = None,
        passes: int = 1,
    ) -> PredictorOutput: ...


class OnnxPredictor:
    """One onnxruntime session for the exported :class:`prescient.models.net.TrajectoryNet`.

    Args:
        model_path: the ``.onnx`` file.
        manifest_path: its manifest; default ``<stem>.manifest.json`` next to it.
        providers: onnxruntime providers in order of preference; absent ones are skipped, the CPU
            always comes last (:func:`select_providers`).
        intra_op_threads: onnxruntime intra-op threads.
        expected_spec_version: raster spec version the caller renders; a different one in the
            manifest is refused. None skips the check (tests, offline tools).
        expected_num_channels: raster channel count the caller renders, or None.
        warmup: run the model once on zeros at load, so the first tick is not slow.
        optimization_level: onnxruntime graph optimisation, a key of :data:`OPTIMIZATION_LEVELS`.
        allow_spinning: intra-op threads busy-wait for work between parallel sections.

    Raises:
        ModelLoadError: missing file, sha256 / names / shapes / spec mismatch.
    """

    def __init__(
        self,
        model_path: str | Path,
        manifest_path: str | Path | None = None,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        intra_op_threads: int = 2,
        expected_spec_version: str | None = None,
        expected_num_channels: int | None = None,
        warmup: bool = True,
        optimization_level: str = "all",
        allow_spinning: bool = True,
        agents_per_pass: int | None = None,
    ) -> None:
        model_path = Path(model_path)
        manifest_path = Path(manifest_path) if manifest_path is not None else manifest_path_for(model_path)
        if not model_path.is_file():
            raise ModelLoadError(f"model file not found: {model_path}")
        manifest = _load_manifest(manifest_path)
        digest = sha256_file(model_path)
        if digest != manifest["sha256"]:
            raise ModelLoadError(
                f"sha256 of {model_path} is {digest[:16]}..., manifest {manifest_path.name} says "
                f"{str(manifest['sha256'])[:16]}...: wrong or corrupt model file"
            )
        spec = str(manifest["raster_spec_version"])
        if expected_spec_version is not None and spec != str(expected_spec_version):
            raise ModelLoadError(
                f"model {model_path.name} was trained on raster spec {spec!r}, "
                f"the rasterizer renders {expected_spec_version!r}: refusing to run"
            )
        try:
            self.cfg = ModelConfig.from_dict(manifest["model_config"])
        except (TypeError, ValueError) as e:
            raise ModelLoadError(f"manifest {manifest_path.name}: bad model_config: {e}") from e
        if expected_num_channels is not None and self.cfg.in_channels != expected_num_channels:
            raise ModelLoadError(
                f"model {model_path.name} takes {self.cfg.in_channels} raster channels, "
                f"the rasterizer renders {expected_num_channels}"
            )

        if optimization_level not in OPTIMIZATION_LEVELS:
            raise ValueError(
                f"optimization_level {optimization_level!r}, expected one of {list(OPTIMIZATION_LEVELS)}"
            )
        use = select_providers(providers)
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = OPTIMIZATION_LEVELS[optimization_level]
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        try:
            self.session = ort.InferenceSession(str(model_path), so, providers=use)
        except Exception as e:  # onnxruntime raises its own exception types for bad graphs
            raise ModelLoadError(f"onnxruntime cannot load {model_path}: {e}") from e
        self._check_io(manifest, model_path.name)
        # The provider that really runs the graph (CUDA may have silently fallen back to CPU).
        self.provider: str = self.session.get_providers()[0]
        if use[0][0] != self.provider:
            log.warning("provider %s is present but did not start: running on %s", use[0][0], self.provider)
        self.manifest = manifest
        self.model_id: str = str(manifest.get("model_id", model_path.stem))
        self.spec_version = spec
        self.intra_op_threads = int(intra_op_threads)
        self.precision: str = str(manifest.get("precision", DEFAULT_PRECISION))
        self.optimization_level = optimization_level
        try:  # per-class temperatures of the mode probabilities (None: uncalibrated), top-label maps
            self.prob_temperature = temperatures_from_manifest(manifest)
            self.prob_top_maps = top_maps_from_manifest(manifest)
        except ValueError as e:
            raise ModelLoadError(f"manifest {manifest_path.name}: {e}") from e
        self._batch_symbolic = not isinstance(manifest["inputs"][0]["shape"][0], int)
        # A symbolic agent axis: feed only the valid agents (fewer pairs to attend over). Not under
        # TensorRT, which builds one engine per input shape: there the slots stay padded.
        agents_dim = self.session.get_inputs()[INPUT_NAMES.index("agent_valid")].shape[1]
        self.agents_symbolic: bool = not isinstance(agents_dim, int) and self.provider != TENSORRT_PROVIDER
        # Agents per pass: the manifest's slots, or more through a symbolic axis (see
        # SYMBOLIC_AGENTS_PER_PASS); ``agents_per_pass`` overrides it for a symbolic axis only.
        per_pass = agents_per_pass if agents_per_pass is not None else SYMBOLIC_AGENTS_PER_PASS
        if per_pass < 1:
            raise ModelLoadError(f"agents_per_pass must be >= 1, got {per_pass}")
        self.agents_per_pass: int = per_pass if self.agents_symbolic else self.cfg.n_max
        self._pass_cfg = replace(self.cfg, n_max=self.agents_per_pass)
        if warmup:
            self._run({n: np.zeros(s, np.float32) for n, s in self.cfg.input_shapes(1).items()})
        log.info("loaded model %s (%s, spec %s) on %s", self.model_id, model_path.name, spec, self.provider)

    def _check_io(self, manifest: dict[str, Any], name: str) -> None:
        def described(items: list[Any]) -> list[tuple[str, list[Any], str]]:
            out = []
            for it in items:
                shape = [d if isinstance(d, int) else str(d) for d in it.shape]
                out.append((it.name, shape, it.type))
            return out

        got_in = described(self.session.get_inputs())
        got_out = described(self.session.get_outputs())
        for kind, got, want, names in (
            ("input", got_in, manifest["inputs"], INPUT_NAMES),
            ("output", got_out, manifest["outputs"], OUTPUT_NAMES),
        ):
            got_names = [g[0] for g in got]
            want_names = [w["name"] for w in want]
            if got_names != want_names or tuple(want_names) != names:
                raise ModelLoadError(
                    f"{name}: {kind} names {got_names}, manifest {want_names}, runtime expects {list(names)}"
                )
            for (g_name, g_shape, g_type), w in zip(got, want):
                w_shape = [d if isinstance(d, int) else str(d) for d in w["shape"]]
                if [d if isinstance(d, int) else "?" for d in g_shape] != [
                    d if isinstance(d, int) else "?" for d in w_shape
                ]:
                    raise ModelLoadError(
                        f"{name}: {kind} {g_name} has shape {g_shape}, manifest says {w_shape}"
                    )
                if g_type != f"tensor({w['dtype'].replace('float32', 'float')})":
                    raise ModelLoadError(
                        f"{name}: {kind} {g_name} has type {g_type}, manifest says {w['dtype']}"
                    )
        cfg_shapes = self.cfg.input_shapes(1)
        for w in manifest["inputs"]:
            want = [d if isinstance(d, int) else self.cfg.n_max for d in w["shape"][1:]]  # "N": n_max at most
            if list(cfg_shapes[w["name"]][1:]) != want:
                raise ModelLoadError(
                    f"{name}: manifest input {w['name']} shape {w['shape']} disagrees with model_config"
                )

    def _run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(list(OUTPUT_NAMES), feed)

    def check_raster(self, raster: np.ndarray, finite: bool = True) -> Float32Array:
        """Validate a (C, H, W) raster; returns it as contiguous float32.

        Args:
            raster: (C, H, W).
            finite: also check every value is finite (~1.5 ms on 2 cores; the rasterizer's own
                output is finite by construction, so :meth:`predict` leaves it out).

        Raises:
            PredictionInputError: wrong shape or non-finite values.
        """
        c = self.cfg.in_channels
        h, w = self.cfg.raster_hw
        if raster.shape != (c, h, w):
            raise PredictionInputError(f"raster: expected shape {(c, h, w)}, got {raster.shape}")
        raster = np.ascontiguousarray(raster, dtype=np.float32)
        if finite and not np.isfinite(np.sum(raster, dtype=np.float64)):
            raise PredictionInputError("raster: non-finite values")
        return raster

    def predict_inputs(
        self, raster: np.ndarray, inputs: AgentInputs
    ) -> tuple[Float32Array, Float32Array, Float32Array, int]:
        """Run the net on prepared inputs; outputs for the valid slots, world frame.

        Args:
            raster: (C, H, W) float32.
            inputs: from :func:`prescient.service.model_io.features.build_agent_inputs` with this predictor's ``cfg``.

        Returns:
            traj (M, K, T, 2), probs (M, K), scale (M, K, T, 2) world frame for the M valid slots
            (slot i is the caller's agent ``inputs.agent_index[i]``), and the inference time in ns.
        """
        if inputs.agent_hist.shape != self.cfg.input_shapes(1)["agent_hist"][1:]:
            raise PredictionInputError(
                f"agent_hist: expected {self.cfg.input_shapes(1)['agent_hist'][1:]}, got {inputs.agent_hist.shape}"
            )
        for name, arr in inputs.as_feed().items():
            if not np.all(np.isfinite(arr)):
                raise PredictionInputError(f"{name}: non-finite values")
        return self._predict_checked(self.check_raster(raster), inputs)

    def _predict_checked(
        self, raster: Float32Array, inputs: AgentInputs
    ) -> tuple[Float32Array, Float32Array, Float32Array, int]:
        """:meth:`predict_inputs` on inputs already checked (see there)."""
        m = int(np.count_nonzero(inputs.agent_index >= 0))
        # At least one slot: a zero-length axis is not a shape every kernel accepts.
        feed = inputs.as_feed(max(m, 1) if self.agents_symbolic else None)
        feed["raster"] = raster[None]
        t0 = time.perf_counter_ns()
        traj, probs, scale = self._run(feed)
        infer_ns = time.perf_counter_ns() - t0
        traj_w, scale_w = world_from_agent_predictions(traj[0, :m], scale[0, :m], inputs.agent_pose_world[:m])
        return traj_w, probs[0, :m].astype(np.float32), scale_w, infer_ns

    def predict(
        self,
        raster: np.ndarray,
        tracks: TrackSnapshot,
        ego_velocity_mps: np.ndarray,
        ego_size_lwh_m: np.ndarray,
        plan_xy_m: np.ndarray | None = None,
        passes: int = 1,
    ) -> PredictorOutput:
        """Predict every track of ``tracks`` (world frame, caller's order).

        Args:
            raster: (C, H, W) float32 from the rasterizer for the same tick (finite; not re-checked).
            tracks: current tracks (world frame, with history).
            ego_velocity_mps: (2,) world frame. ego_size_lwh_m: (3,).
            plan_xy_m: (S, 2) world-frame ego plan, or None.
            passes: model passes at most: pass k predicts the ``agents_per_pass`` agents nearest
                the ego that earlier passes left (on the same raster; agents of different passes
                do not attend to each other).

        Returns:
            :class:`PredictorOutput` with N = number of tracks; tracks beyond ``passes *
            agents_per_pass`` (the farthest from the ego) get constant velocity and ``from_model``
            False.

        Raises:
            PredictionInputError: a raster of the wrong shape.
        """
        cfg = self.cfg
        n = tracks.position_m.shape[0]
        k, t = cfg.num_modes, cfg.future_steps
        traj = np.empty((n, k, t, 2), np.float32)
        probs = np.empty((n, k), np.float32)
        scale = np.empty((n, k, t, 2), np.float32)
        # The snapshot's rows were checked where it was made and the raster comes from the
        # rasterizer: only shapes are looked at here (the pipeline checks the model's output).
        raster = self.check_raster(raster, finite=False)
        from_model = np.zeros(n, bool)
        rest = np.arange(n)  # rows of ``tracks`` not predicted yet
        infer_ns = 0
        for _ in range(max(1, passes)):
            # Each pass takes the agents_per_pass agents of ``rest`` nearest the ego (the first: of all).
            group = tracks if rest.size == n else tracks.take(rest)
            inputs = agent_inputs_from_tracks(self._pass_cfg, group, ego_velocity_mps, ego_size_lwh_m, plan_xy_m)
            traj_m, probs_m, scale_m, ns = self._predict_checked(raster, inputs)
            idx = rest[inputs.agent_index[: traj_m.shape[0]]]
            traj[idx], probs[idx], scale[idx] = traj_m, probs_m, scale_m
            from_model[idx] = True
            infer_ns += ns
            rest = np.flatnonzero(~from_model)
            if rest.size == 0:
                break
        probs[from_model] = self.calibrate(probs[from_model], tracks.class_id[from_model])
        if rest.size:  # beyond the passes' slots: constant velocity
            traj[rest], probs[rest], scale[rest] = constant_velocity_predictions(
                tracks.position_m[rest].astype(np.float64),
                tracks.velocity_mps[rest].astype(np.float64),
                num_modes=k,
                future_steps=t,
                dt_s=cfg.dt_s,
            )
        return PredictorOutput(traj, probs, scale, from_model, infer_ns)

    def calibrate(self, probs: np.ndarray, class_id: np.ndarray) -> Float32Array:
        """The model's mode probabilities (A, K) of agents of ``class_id`` (A,), calibrated per
        class as the manifest says (:mod:`prescient.service.model_io.calibration`)."""
        return calibrate_probs(probs, class_id, self.prob_temperature, self.prob_top_maps)


def load_service_predictor(
    model: Path | None,
    threads: int,
    providers: tuple[str, ...],
    *,
    allow_spinning: bool = True,
    agents_per_pass: int | None = None,
) -> tuple[Predictor | None, str]:
    """Load the ONNX model, or return (None, reason) when the file is absent.

    ``allow_spinning``: onnxruntime's intra-op threads busy-wait between parallel sections (see
    ``prescient bench infer`` for its cost on a loaded 2-core machine). ``agents_per_pass``: see
    :class:`OnnxPredictor` (None: :data:`SYMBOLIC_AGENTS_PER_PASS`).

    A model that exists but disagrees with its manifest or the raster spec is a startup error
    (raised by the predictor as :class:`~prescient.bus.errors.StartupError`): running a wrong model is
    worse than running none.
    """
    from prescient.service.raster import RasterConfig, build_spec

    if model is None:
        return None, "no model configured"
    if not Path(model).is_file():
        log.warning("model %s not found: publishing constant-velocity predictions flagged degraded", model)
        return None, f"model file missing: {model}"
    spec = build_spec(RasterConfig())  # the raster the service renders; the model must match it exactly
    predictor = OnnxPredictor(
        model,
        providers=providers,
        intra_op_threads=threads,
        expected_spec_version=spec.fingerprint(),
        expected_num_channels=spec.num_channels,
        allow_spinning=allow_spinning,
        agents_per_pass=agents_per_pass,
    )
    return predictor, ""
