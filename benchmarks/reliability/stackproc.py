"""The stack under attack: ``prescient up --no-live`` as a child process, and its children.

The launcher supervises its children (``service/app/stack.py``): a child that exits is restarted and
the launcher logs ``<name> exited with <rc> (<last line>); restarting (i/MAX)``, or ``<name> keeps
failing`` when it gives up (and ``restarts`` per child in ``summary.json``). Those lines are how restarts are counted here; a restart that no
``kill -9`` of ours explains is a crash. Children are found under the launcher's pid in
``/proc`` and told apart by their ``python -m prescient.service <command>`` argv.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# ``python -m prescient.service <command>`` -> the launcher's child name (its per-process log is <name>.log)
CHILD_OF_COMMAND = {
    "bus": "bus",
    "record": "recorder",
    "serve": "service",
    "planner": "planner",
    "sim": "sim",
}
_RESTART = re.compile(r"(\w+) exited with (\S+) \(.*\); restarting")
_GAVE_UP = re.compile(r"(\w+) keeps failing")
_GAP_FILL = re.compile(r"missed around its restarts written to (\S+)")


@dataclass
class Restart:
    """One restart the launcher logged: when we read the line (monotonic s), child, exit code."""

    t_s: float
    name: str
    returncode: str


@dataclass
class StackProcess:
    """``prescient up`` on a private bus, run until :meth:`stop`.

    Args:
        run_dir: the stack's run directory (per-process logs, ``log*.mcap``, ``up.log``).
        bus: ``$PRESCIENT_BUS`` for this stack, e.g. ``tcp://127.0.0.1:5790``.
        model: ONNX model, or None for the constant-velocity fallback.
    """

    run_dir: Path
    bus: str
    agents: int = 20
    model: Path | None = None
    record: bool = True
    proc: subprocess.Popen | None = None
    lines: list[tuple[float, str]] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def expected(self) -> tuple[str, ...]:
        """Children the launcher runs, in its start order."""
        return (
            ("bus", "recorder", "service", "planner", "sim")
            if self.record
            else ("bus", "service", "planner", "sim")
        )

    def start(self) -> None:
        """Start the launcher.

        Raises:
            FileExistsError: ``run_dir`` holds logs already (the loss count needs fresh ones).
        """
        if any(self.run_dir.glob("*.mcap")):
            raise FileExistsError(f"{self.run_dir} holds *.mcap logs already: choose an empty directory")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PRESCIENT_BUS=self.bus)  # $NUMBA_CACHE_DIR: prescient.bus.jit_cache
        argv = [
            sys.executable,
            "-m",
            "prescient.service",
            "up",
            "--no-live",
            "--no-picture",
            "--duration",
            "3600",
        ]
        argv += ["--agents", str(self.agents), "--bus", self.bus, "--out", str(self.run_dir.resolve())]
        argv += ["--no-model"] if self.model is None else ["--model", str(self.model.resolve())]
        argv += [] if self.record else ["--no-record"]
        self.proc = subprocess.Popen(  # cwd: a folder of ours, nothing there shadows an import
            argv,
            env=env,
            cwd=self.run_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with open(self.run_dir / "up.log", "w") as out:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                self.lines.append((time.monotonic(), line))
                out.write(line + "\n")
                out.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def children(self) -> dict[str, int]:
        """Running children: name -> pid (from ``/proc``; empty if the launcher is gone)."""
        if not self.alive():
            return {}
        pids: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        out = {}
        for pid in pids:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state == "Z":
                continue  # exited, not yet reaped by the launcher
            if b"prescient.service" in argv:
                i = argv.index(b"prescient.service")
                name = CHILD_OF_COMMAND.get(argv[i + 1].decode() if i + 1 < len(argv) else "")
                if name:
                    out[name] = pid
        return out

    def kill_child(self, name: str) -> int | None:
        """``kill -9`` the running child ``name``; returns its pid (None if not running)."""
        pid = self.children().get(name)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        return pid

    def restarts(self) -> list[Restart]:
        """Every restart the launcher logged so far."""
        out = []
        for t, line in list(self.lines):
            hit = _RESTART.search(line)
            if hit:
                out.append(Restart(t, hit.group(1), hit.group(2)))
        return out

    def gave_up(self) -> list[str]:
        """Children the launcher stopped restarting."""
        return [h.group(1) for _, line in list(self.lines) if (h := _GAVE_UP.search(line))]

    def fill_parts(self) -> frozenset[str]:
        """Log parts the launcher wrote with frames a restarting recorder missed (file names)."""
        return frozenset(
            Path(h.group(1)).name for _, line in list(self.lines) if (h := _GAP_FILL.search(line))
        )

    def stop(self, timeout_s: float = 40.0) -> int | None:
        """SIGINT the launcher (it stops its children in order); its exit code, None if it hung.

        A launcher that does not exit within ``timeout_s`` is killed (its children get SIGTERM
        from the kernel: they were started with ``PR_SET_PDEATHSIG``).
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return None
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode

    def child_log_tail(self, name: str, max_lines: int = 40) -> str:
        """The last traceback in ``<name>.log`` (or its last lines): evidence for a crash."""
        try:
            lines = (self.run_dir / f"{name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return f"(no {name}.log)"
        starts = [i for i, ln in enumerate(lines) if ln.startswith("Traceback")]
        chosen = lines[starts[-1] :] if starts else lines[-10:]
        return "\n".join(chosen[:max_lines])


def unexplained_restarts(restarts: list[Restart], kills: list[tuple[float, str]]) -> list[Restart]:
    """Restarts that no kill explains: each kill of a child accounts for its next restart."""
    pending = sorted(kills)
    out = []
    for r in sorted(restarts, key=lambda r: r.t_s):
        match = next((k for k in pending if k[1] == r.name and k[0] <= r.t_s), None)
        if match is not None:
            pending.remove(match)
        else:
            out.append(r)
    return out
