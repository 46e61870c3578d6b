"""``benchmarks/fleet_cluster.sh``: two real Ray nodes, tasks on both (Ray's state API), clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.fleet_helpers import write_tracks_log

pytest.importorskip("ray")
pytest.importorskip("aiohttp", reason="the state API needs ray[default] (the fleet extra)")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fleet_cluster.sh"


MARKER = "PRESCIENT_FLEET_CLUSTER"  # the script exports MARKER=<its temp dir> to everything it starts


def _marked(proc: Path, run: str | None) -> bool:
    """Does the process carry the marker of the run (``run``: its temp dir; None: of any run) in its
    environment, or name the temp dir on its command line? Another user's environment is unreadable."""
    name = (run or "/tmp/pfc.").encode()
    mark = f"{MARKER}={run or '/tmp/pfc.'}".encode()
    try:
        if name in (proc / "cmdline").read_bytes():
            return True
        environ = (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return mark in environ if run else any(e.startswith(mark) for e in environ)


def _session(proc: Path) -> int | None:
    """The process's session, None when it is gone or a zombie (dead, only not reaped yet)."""
    try:
        stat = (proc / "stat").read_text()
    except OSError:
        return None
    state, _, _, session = stat[stat.rindex(")") + 2 :].split()[:4]  # after "pid (comm) "
    return None if state in "ZX" else int(session)


def _cluster_processes(run: str | None = None, sessions: Iterable[int] = ()) -> dict[int, str]:
    """Processes of a run of the script (``run``: its temp dir, None: any run) marked as such, or in
    one of ``sessions`` (its nodes'); pid -> command line.

    The session counts because Ray's setproctitle overwrites the environment /proc shows: the marker
    alone missed a node's dashboard agents. As in the script, a session id counts only while its
    leader (the node's `ray start`, long gone) has not been followed by an unmarked process of the
    same pid.
    """
    live = {int(s) for s in sessions if not Path(f"/proc/{s}").exists() or _marked(Path(f"/proc/{s}"), run)}
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        session = _session(d)
        if session is not None and (_marked(d, run) or session in live):
            with contextlib.suppress(OSError):
                cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ")
                found[int(d.name)] = cmdline.decode(errors="replace").strip()
    return found


def _run_of(stderr: str | bytes | None) -> tuple[str | None, list[int]]:
    """The run's temp dir and its nodes' sessions, from what the script printed to stderr."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr or ""
    run = re.search(rf"{MARKER}=(/tmp/pfc\.\w+)", text)
    return (run[1] if run else None), [int(s) for s in re.findall(r"node session (\d+)", text)]


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fleet_cluster_two_nodes_both_run_tasks_and_stop(tmp_path: Path) -> None:
    """Four logs over two 1-CPU nodes: the state API sees finished tasks on both; no process is left.

    "No process is left": within 30 s of the script's exit (processes die asynchronously) no process
    carries the run's marker, names its temp dir or is in the session of one of its nodes. Limits are
    generous: starting two Ray nodes on a busy 2-core machine took over 100 s once.
    """
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(4):
        write_tracks_log(logs / f"t{i}.mcap", seconds=2.0)
    before = _cluster_processes().keys()
    out = tmp_path / "out"
    try:
        res = subprocess.run(
            ["bash", str(SCRIPT), str(out), str(logs), "--", "--no-model"],
            capture_output=True, text=True, timeout=240, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        # The script's own cleanup dies with it: stop the nodes it started, so no later test or
        # run finds a stray cluster.
        _kill(_cluster_processes(sessions=_run_of(exc.stderr)[1]).keys() - before)
        pytest.fail("fleet_cluster.sh did not finish within 240 s; its nodes were killed")
    run, sessions = _run_of(res.stderr)
    assert run, res.stderr[-2000:]
    deadline = time.monotonic() + 30
    while (left := _cluster_processes(run, sessions)) and time.monotonic() < deadline:
        time.sleep(0.5)
    _kill(left)  # a failing run leaves no cluster behind either
    assert not left, f"processes of run {run} alive 30 s after the script's exit: {left}"
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert len(sessions) == 2, res.stderr[-2000:]
    proof = json.loads((out / "cluster_proof.json").read_text())
    assert proof["tasks_on_both_nodes"] and len(proof["finished_tasks_per_node"]) == 2
    assert sum(proof["finished_tasks_per_node"].values()) == 4
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
