"""A :class:`prescient.bus.messages.VectorMap` as a JSON file (``prescient import lanelet2 --out MAP.json``).

Layout (``format_version`` 1)::

    {"format": "prescient.vector_map", "format_version": 1,
     "vector_map": {"header": {...}, "map_id": "...", "lane_id": [...], ...},   # every field, arrays as lists
     "extras": {...}}                                                          # importer-specific, optional

Arrays are nested lists (each float32 value written as the exact float64 of it, so the round
trip is bit-exact); the reader restores each field's declared dtype and shape and checks the result
with the codec (dtypes, shapes, CSR offsets, finiteness), as for a map arriving on the bus.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

import numpy as np

from prescient.bus import messages as m
from prescient.bus.codec import check_message
from prescient.bus.errors import EncodeError
from prescient.bus.importers import InputError
from prescient.bus.logfile import json_from_message

FORMAT: Final = "prescient.vector_map"
FORMAT_VERSION: Final = 1  # bump when the layout above changes


def write_map_json(
    path: str | Path, vmap: m.VectorMap, extras: dict[str, Any] | None = None, *, overwrite: bool = False
) -> Path:
    """Write ``vmap`` (checked by the codec first) and optional JSON-able ``extras``.

    Raises:
        FileExistsError: ``path`` holds data and not ``overwrite``.
        EncodeError: ``vmap`` breaks the message schema.
    """
    path = Path(path)
    check_message(vmap)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vector_map": json_from_message(vmap),
        "extras": extras or {},
    }
    text = json.dumps(doc, separators=(",", ":"))
    # Write a temporary file, then rename: a failed write never leaves half a map behind.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    if not overwrite and path.is_file() and path.stat().st_size:  # as logs: an empty file may be reused
        tmp.unlink()
        raise FileExistsError(f"{path}: exists; refusing to overwrite it (pass --force)")
    os.replace(tmp, path)
    return path


def _array(path: Path, name: str, value: Any, spec: Any) -> np.ndarray:
    """One array field from its JSON list, with the declared dtype and (for empty lists) shape."""
    try:
        a = np.array(value, dtype=spec.dtype)
    except (TypeError, ValueError, OverflowError) as e:
        raise InputError(path, f"vector_map.{name}: not a {spec.dtype} array ({e})") from e
    if a.size == 0:  # [] carries no trailing dimensions: take the fixed ones from the spec
        a = a.reshape(tuple(0 if isinstance(d, str) else d for d in spec.shape))
    return a


def read_map_json(path: str | Path) -> m.VectorMap:
    """The VectorMap of a file written by :func:`write_map_json`.

    Raises:
        InputError: one line naming the file and the problem (missing, not JSON, other format
            or version, a missing or malformed field).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise InputError(path, f"not a map JSON file: {type(e).__name__}: {str(e)[:80]}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(path, f"not a {FORMAT} file (write one with `prescient import lanelet2`)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise InputError(
            path, f"format_version {doc.get('format_version')!r}, this reader knows {FORMAT_VERSION}"
        )
    raw = doc.get("vector_map")
    if not isinstance(raw, dict):
        raise InputError(path, "missing 'vector_map' object")
    specs, scalars = m.array_specs(m.VectorMap), m.scalar_specs(m.VectorMap)
    missing = sorted((set(specs) | set(scalars)) - set(raw))
    if missing:
        raise InputError(path, f"vector_map: missing fields {missing}")
    kwargs: dict[str, Any] = {name: _array(path, name, raw[name], spec) for name, spec in specs.items()}
    kwargs.update({name: raw[name] for name in scalars})
    try:
        vmap = m.VectorMap(header=m.Header(topic=m.TOPIC_MAP), **kwargs)
        check_message(vmap)
    except (EncodeError, TypeError) as e:
        raise InputError(path, f"vector_map: {e}") from e
    return vmap
