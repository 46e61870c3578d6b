"""Importers: public data sets -> prescient MCAP logs (same messages as the live stack).

Each importer validates its input and raises :class:`InputError` naming the file, the column or
row and the problem (missing column, NaN, out-of-range value, non-monotonic time, unknown
category...). That is the only error malformed input can cause (a fuzz test holds them to it),
besides :class:`~prescient.bus.logfile.LogExistsError` when the output holds data and ``overwrite`` is
False. A failed import leaves no output file. Logs written by importers use
``log_time = header.stamp_ns`` (the data set's clock) and ``publish_time = header.stamp_ns``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import numpy as np

from prescient.bus.errors import BusError, EncodeError
from prescient.bus.logfile import LogWriter

INT64_MAX: Final = 2**63 - 1
# Bound on positions (m), sizes (m), velocities (m/s), headings (rad) and quaternion components:
# far beyond any real scene, and small enough that every value derived from them (differences
# over >= 1 ns, float32 on the wire) stays finite.
MAX_ABS_VALUE: Final = 1e7


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


def finite_column(
    path: Path, df: Any, column: str, dtype: Any = np.float64, max_abs: float | None = None
) -> np.ndarray:
    """Column as a numpy array; raises InputError naming the first NaN/inf, non-numeric or
    out-of-range (``|v| > max_abs``; None: no bound) row."""
    try:
        a = df[column].to_numpy(dtype=dtype)
    except (TypeError, ValueError, OverflowError) as e:
        raise InputError(path, f"not numeric: {e}", column=column) from e
    if a.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            raise InputError(path, f"NaN or inf value ({bad.size} rows)", column=column, row=int(bad[0]))
    if max_abs is not None:
        bad = np.flatnonzero(np.abs(a) > max_abs)
        if bad.size:
            raise InputError(
                path, f"value {a[bad[0]]} out of range (|v| <= {max_abs:g})", column=column, row=int(bad[0])
            )
    return a


def integer_column(path: Path, df: Any, column: str, lo: int = 0, hi: int = INT64_MAX) -> np.ndarray:
    """Column of whole numbers in ``[lo, hi]`` as int64 (exact for integer columns).

    Raises:
        InputError: naming the first NaN, fractional, non-numeric or out-of-range row.
    """
    f = finite_column(path, df, column, np.float64, max_abs=None)
    raw = df[column].to_numpy()
    if raw.dtype.kind in "iu":
        out_of_range = (raw < lo) | (raw > hi)
    else:
        frac = np.flatnonzero(f != np.round(f))
        if frac.size:
            raise InputError(path, f"{f[frac[0]]} is not a whole number", column=column, row=int(frac[0]))
        out_of_range = (f < lo) | (f > hi)
        raw = f
    bad = np.flatnonzero(out_of_range)
    if bad.size:
        raise InputError(
            path, f"value {raw[bad[0]]} out of range [{lo}, {hi}]", column=column, row=int(bad[0])
        )
    return raw.astype(np.int64)


def string_column(path: Path, df: Any, column: str) -> np.ndarray:
    """Column as an object array of ``str``; a missing value (NaN, None, NA) raises InputError."""
    out = np.empty(len(df), dtype=object)
    for i, v in enumerate(df[column].to_numpy(dtype=object)):
        if v is None or (isinstance(v, float) and v != v) or type(v).__name__ in ("NAType", "NaTType"):
            raise InputError(path, "missing value", column=column, row=i)
        out[i] = str(v)
    return out


@contextmanager
def import_writer(out: str | Path, src: str | Path, *, overwrite: bool) -> Iterator[LogWriter]:
    """The output log of an importer. On any error the file is removed (no partial log is left
    to be mistaken for a complete one), and a message the codec refuses becomes an InputError
    naming ``src`` (every check that names the column should come first; this is the net)."""
    w = LogWriter(out, overwrite=overwrite)
    try:
        yield w
    except BaseException as e:
        w.close()
        Path(out).unlink(missing_ok=True)
        if isinstance(e, EncodeError):
            raise InputError(src, f"a value does not fit the message format: {e}") from e
        raise
    w.close()
