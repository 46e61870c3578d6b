"""Importers: public data sets -> prescient MCAP logs (same messages as the live stack).

Each importer validates its input and raises :class:`InputError` naming the file, the column or
row and the problem (missing column, NaN, non-monotonic time, unknown category...). Logs written
by importers use ``log_time = header.stamp_ns`` (the data set's clock) and
``publish_time = header.stamp_ns``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bus.errors import BusError


class InputError(BusError):
    """A data-set file an importer cannot use. The message names file, column/row and problem."""

    def __init__(
        self, path: str | Path, problem: str, *, column: str | None = None, row: int | None = None
    ) -> None:
        where = str(path)
        if column is not None:
            where += f", column {column!r}"
        if row is not None:
            where += f", row {row}"
        super().__init__(f"{where}: {problem}")
        self.path, self.problem, self.column, self.row = str(path), problem, column, row


def read_table(path: Path, columns: tuple[str, ...]) -> Any:
    """Read a CSV / feather / parquet table with pandas and check the required columns.

    Raises:
        InputError: unreadable file or a missing column.
    """
    import pandas as pd  # data extra: only importers need pandas

    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        if path.suffix == ".csv":
            df = pd.read_csv(path)
        elif path.suffix == ".feather":
            df = pd.read_feather(path)
        elif path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise InputError(path, f"unsupported table format {path.suffix!r} (csv, feather, parquet)")
    except InputError:
        raise
    except Exception as e:  # pandas/pyarrow raise many error types for unreadable files
        raise InputError(path, f"cannot read table: {type(e).__name__}: {e}") from e
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {missing}; found {list(df.columns)}", column=missing[0])
    return df


def finite_column(path: Path, df: Any, column: str, dtype: Any = np.float64) -> np.ndarray:
    """Column as a numpy array; raises InputError naming the first NaN/inf or non-numeric row."""
    try:
        a = df[column].to_numpy(dtype=dtype)
    except (TypeError, ValueError) as e:
        raise InputError(path, f"not numeric: {e}", column=column) from e
    if a.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            raise InputError(path, f"NaN or inf value ({bad.size} rows)", column=column, row=int(bad[0]))
    return a
