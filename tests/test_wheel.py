"""The installed product works like the checkout.

A wheel is built from the current working tree (its tracked and untracked, not ignored files under
the five package folders, copied to a temporary folder so the checkout gets no ``build/``), then
installed with only the ``cpu`` extra into a fresh virtual environment (dependencies from this
machine's pip configuration; no ``--system-site-packages``, which would hide a missing dependency).
From an unrelated folder holding decoy ``models.py`` and ``bus/`` (a top-level import by folder name
would load them and fail), that environment's ``prescient`` runs ``--version``, ``up``, ``replay``,
``log info`` and ``bench e2e``; nothing may be written into its ``site-packages/prescient``.

About 3 minutes on 2 cores, most of it numba compiling the kernels cold in the new environment
(``up`` warms the stages up before its clock starts). Skipped, with pip's reason, when the
dependencies cannot be installed (no network and no local wheels).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("bus", "sim_sensors", "service", "models", "benchmarks")
BUILD_FILES = ("pyproject.toml", "README.md")  # what the build reads besides the package folders
# pip's words for "the dependency cannot be fetched here", as opposed to a broken package.
UNREACHABLE = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "NewConnectionError",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "ReadTimeoutError",
    "ConnectTimeoutError",
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@dataclass
class Installed:
    venv: Path
    site: Path  # site-packages/prescient of the new environment
    elsewhere: Path  # the unrelated working folder, with the decoys
    env: dict[str, str]
    home: Path  # $PRESCIENT_HOME

    def prescient(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``prescient ARGS`` of the new environment, run in :attr:`elsewhere`; output echoed on failure."""
        t0 = time.monotonic()
        proc = subprocess.run(
            [str(self.venv / "bin" / "prescient"), *args],
            cwd=self.elsewhere,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        print(f"prescient {' '.join(args)}: exit {proc.returncode} in {time.monotonic() - t0:.1f} s")
        return proc


def _working_tree_files() -> list[str]:
    """Files of the working tree the build reads: tracked or untracked-not-ignored, present on disk."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: cannot tell the working tree's files from build leftovers")
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *BUILD_FILES, *ROOTS],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({f for f in out.split("\0") if f and (REPO / f).is_file()})


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file under ``root``, byte-code and numba caches left out."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".nbi", ".nbc")
    }


def _tail(proc: subprocess.CompletedProcess[str], n: int = 3000) -> str:
    return (proc.stdout + proc.stderr)[-n:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the current working tree."""
    base = tmp_path_factory.mktemp("wheel")
    src, dist = base / "src", base / "dist"
    for rel in _working_tree_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    if not _installed("setuptools"):
        pytest.skip("setuptools (the build backend) is not installed in this environment")
    if _installed("build"):
        cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)]
    else:  # the environment's own setuptools (pyproject's build backend): no index needed
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(src),
        ]
    # cwd: not the checkout, whose ignored build/ folder would pass for the `build` package
    proc = subprocess.run(cmd, cwd=base, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, _tail(proc)
    (whl,) = dist.glob("prescient-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """A fresh virtual environment with the wheel and its ``cpu`` extra, and a folder to run in."""
    base = tmp_path_factory.mktemp("installed")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--retries", "1", f"{wheel}[cpu]"],
            capture_output=True,
            text=True,
            timeout=480,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("installing the wheel's dependencies took over 8 minutes (no network, no local wheels?)")
    print(f"pip install {wheel.name}[cpu]: {time.monotonic() - t0:.0f} s")
    if proc.returncode != 0 and any(s in proc.stdout + proc.stderr for s in UNREACHABLE):
        pytest.skip(f"the wheel's dependencies cannot be installed here: {_tail(proc, 600)}")
    assert proc.returncode == 0, _tail(proc)
    (site,) = (venv / "lib").glob("python3*/site-packages/prescient")
    elsewhere = base / "elsewhere"
    (elsewhere / "bus").mkdir(parents=True)
    (elsewhere / "models.py").write_text('raise ImportError("decoy models.py was imported")\n')
    (elsewhere / "bus" / "__init__.py").write_text('raise ImportError("decoy bus/ was imported")\n')
    home = base / "home"
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PRESCIENT_HOME=str(home),
        NUMBA_CACHE_DIR=str(base / "numba"),
    )
    yield Installed(venv, site, elsewhere, env, home)


def test_wheel_holds_the_package_data(wheel: Path) -> None:
    """Everything the installed commands read lies in the wheel; nothing but prescient.* is installed."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in (
        "benchmarks/budgets.toml",
        "models/shipped/prescient.onnx",
        "models/shipped/prescient.manifest.json",
        "models/scenario_diffusion/weights.pt",
        "models/scenario_diffusion/examples/bus_right_turn.yaml",
        *(f"{r}/py.typed" for r in ROOTS),
    ):
        assert f"prescient/{rel}" in names, rel
    assert {n.split("/")[0] for n in names} == {"prescient", wheel.name.split("-py3")[0] + ".dist-info"}
    assert not [n for n in names if "/results/" in n or "__pycache__" in n]


def test_installed_product_runs_from_anywhere(installed: Installed) -> None:
    """version, up, replay, log info and the headline benchmark; results outside site-packages."""
    before = _snapshot(installed.site)
    # A private bus: a stack or test elsewhere on this machine may hold the default ports.
    bus_dir = Path(tempfile.mkdtemp(prefix="pw-"))  # short: ipc:// paths are limited to ~100 bytes
    try:
        proc = installed.prescient("--version")
        assert proc.returncode == 0 and proc.stdout.startswith("prescient 0."), _tail(proc)
        assert "sha256" in proc.stdout

        proc = installed.prescient(
            "up",
            "--duration",
            "5",
            "--agents",
            "10",
            "--no-live",
            "--out",
            "run",
            "--bus",
            f"ipc://{bus_dir}/b",
        )
        assert proc.returncode == 0, _tail(proc)
        summary = json.loads((installed.elsewhere / "run" / "summary.json").read_text())
        assert summary["completed"] and summary["predictions"] > 0, summary
        log = installed.elsewhere / "run" / "log.mcap"
        assert log.is_file()

        proc = installed.prescient("replay", str(log), "--out", "r.mcap")
        assert proc.returncode == 0, _tail(proc)
        proc = installed.prescient("log", "info", "r.mcap")
        assert proc.returncode == 0 and "pred.trajectories" in proc.stdout, _tail(proc)

        proc = installed.prescient(
            "bench", "e2e", "--ticks", "50", "--agents", "10", "--scenarios", "day", "--warmup-s", "2"
        )
        assert proc.returncode == 0, _tail(proc)
        assert "Traceback" not in proc.stdout + proc.stderr, _tail(proc)
        results = installed.home / "bench"
        assert f"json: {results / 'e2e.json'}" in proc.stdout, _tail(proc)
        point = json.loads((results / "e2e.json").read_text())["points"][0]
        assert point["ticks"] > 0, point
    finally:
        shutil.rmtree(bus_dir, ignore_errors=True)
    after = _snapshot(installed.site)
    written = sorted(k for k in after.keys() | before.keys() if after.get(k) != before.get(k))
    assert not written, f"written into {installed.site}: {written}"
