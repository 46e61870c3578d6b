"""The LOGS arguments of ``prescient fleet replay``: files, folders or globs, to a sorted list of logs."""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path

from prescient.bus.errors import StartupError

LOG_SUFFIX = ".mcap"


def expand_logs(patterns: list[str]) -> list[Path]:
    """Every log named by ``patterns``, each once, sorted by resolved path.

    Args:
        patterns: files (any name: an explicit file is taken as a log), folders (every ``*.mcap``
            below, recursively) or globs (``runs/**/log.mcap``).

    Returns:
        Absolute paths. A named file that does not exist is kept, so it is reported as a failed
        log with its reason rather than silently dropped.

    Raises:
        StartupError: a folder or glob that holds no log, or no pattern at all.
    """
    found: dict[Path, None] = {}
    for pat in patterns:
        p = Path(pat)
        if p.is_dir():
            hits = sorted(q for q in p.rglob(f"*{LOG_SUFFIX}") if q.is_file())
            if not hits:
                raise StartupError(f"no {LOG_SUFFIX} logs under the folder {p}")
        elif glob.has_magic(pat):
            hits = sorted(Path(q) for q in glob.glob(pat, recursive=True) if Path(q).is_file())
            if not hits:
                raise StartupError(f"no logs match {pat!r}")
        else:
            hits = [p]
        for q in hits:
            found[q.absolute()] = None
    if not found:
        raise StartupError("no logs given")
    return sorted(found)


def log_key(path: Path) -> str:
    """A file-name-safe key, stable for one absolute path: ``<stem>-<sha1 of the path, 10 hex>``."""
    digest = hashlib.sha1(str(path.absolute()).encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)[:60]
    return f"{stem}-{digest}"


def log_fingerprint(path: Path) -> dict[str, int]:
    """``{"size", "mtime_ns"}`` of ``path`` (zeros when it cannot be read): a changed log is redone."""
    try:
        st = path.stat()
    except OSError:
        return {"size": 0, "mtime_ns": 0}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
