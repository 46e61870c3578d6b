"""Files of a fleet run folder: one record per log (resume), written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RECORDS_DIR = "logs"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader (or a crash) sees the old file or the new one, never a part.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """:func:`write_atomic` of ``obj`` as indented JSON."""
    write_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """:func:`write_atomic` of one JSON object per line."""
    write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())


def record_path(out_dir: Path, key: str) -> Path:
    """Where the record of the log with ``key`` lives."""
    return out_dir / RECORDS_DIR / f"{key}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when it is absent or unreadable (then the log is simply done again)."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def read_results(out_dir: Path) -> list[dict[str, Any]]:
    """The per-log rows of an earlier run's ``results.jsonl`` (for ``--baseline``).

    Raises:
        OSError: the file is missing or unreadable. ValueError: a line is not JSON.
    """
    text = (out_dir / "results.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
