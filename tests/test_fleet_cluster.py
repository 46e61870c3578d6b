"""``benchmarks/fleet_cluster.sh``: two real Ray nodes, tasks on both (Ray's state API), clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fleet_helpers import write_tracks_log

pytest.importorskip("ray")
pytest.importorskip("aiohttp", reason="the state API needs ray[default] (the fleet extra)")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fleet_cluster.sh"


def _cluster_processes() -> set[int]:
    """Processes of any run of the script (their command line names a /tmp/pfc.* temp dir)."""
    found = set()
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and b"/tmp/pfc." in (d / "cmdline").read_bytes():
                found.add(int(d.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(260)
def test_fleet_cluster_two_nodes_both_run_tasks_and_stop(tmp_path: Path) -> None:
    """Four logs over two 1-CPU nodes: the state API sees finished tasks on both; no node is left.

    Limits are generous: starting two Ray nodes on a busy 2-core machine took over 100 s once.
    """
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(4):
        write_tracks_log(logs / f"t{i}.mcap", seconds=2.0)
    before = _cluster_processes()
    out = tmp_path / "out"
    try:
        res = subprocess.run(
            ["bash", str(SCRIPT), str(out), str(logs), "--", "--no-model"],
            capture_output=True, text=True, timeout=240, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        # The script's own cleanup dies with it: stop the nodes it started, so no later test or
        # run finds a stray cluster.
        for pid in _cluster_processes() - before:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail("fleet_cluster.sh did not finish within 240 s; its nodes were killed")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    proof = json.loads((out / "cluster_proof.json").read_text())
    assert proof["tasks_on_both_nodes"] and len(proof["finished_tasks_per_node"]) == 2
    assert sum(proof["finished_tasks_per_node"].values()) == 4
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    assert _cluster_processes() <= before
