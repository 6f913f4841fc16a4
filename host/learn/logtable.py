"""The in-memory form of a signal log (:class:`LogTable`): named columns over time, with the
checks that name the row and column of a bad value. The file formats: :mod:`.logs` (CSV,
and either format by suffix) and :mod:`.mcap`."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NnmpcError


LOG_SUFFIXES = (".csv", ".mcap")
SOLVER_COLUMNS = ("iterations", "status", "residual", "work_us", "work", "overrun")
# (column prefix or None for the solver columns, topic, schema title); the first match wins,
# columns that match none go to /extra.
CHANNELS = (
    ("ref_", "/reference", "nnmpc.Reference"),
    ("ytrue_", "/output_true", "nnmpc.OutputTrue"),
    ("y_", "/output", "nnmpc.Output"),
    ("u_", "/input", "nnmpc.Input"),
    (None, "/solver", "nnmpc.Solver"),
    ("", "/extra", "nnmpc.Extra"),
)
MCAP_METADATA = "nnmpc"
INTEGER_COLUMNS = ("k", "iterations", "status", "overrun", "work")


def channel_of(column: str) -> tuple[str, str, str]:
    """(topic, schema title, field name) a column goes to in an MCAP file."""
    for prefix, topic, title in CHANNELS:
        if prefix is None:
            if column in SOLVER_COLUMNS:
                return topic, title, column
        elif column.startswith(prefix):
            return topic, title, column[len(prefix):]
    raise AssertionError(column)  # "" matches everything


@dataclass
class LogTable:
    """A log's columns as read (CSV: strings; MCAP: floats), with where each row came from."""

    path: Path
    names: list[str]                      # column names in file order, "t" among them
    cells: dict[str, np.ndarray]          # column -> values (str or float), one per row
    lines: np.ndarray                     # per row: CSV line number / MCAP period index
    meta: dict = field(default_factory=dict)
    row_word: str = "row"                 # "row" (CSV) or "message" (MCAP)
    _float: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.lines)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, t, columns: dict[str, np.ndarray], meta: dict | None = None,
                    path: str | Path = "<memory>") -> "LogTable":
        """A table from arrays: ``t`` (T,) and ``{column: (T,) values}`` in order."""
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        cells = {"t": t}
        for name, v in columns.items():
            v = np.asarray(v, dtype=np.float64).reshape(-1)
            if len(v) != len(t):
                raise NnmpcError(f"column {name} has {len(v)} values for {len(t)} times")
            cells[name] = v
        return cls(Path(path), list(cells), cells, np.arange(1, len(t) + 1), dict(meta or {}))

    @classmethod
    def from_signals(cls, t, u, y, input_names, output_names, meta: dict | None = None,
                     extra: dict[str, np.ndarray] | None = None) -> "LogTable":
        """A collect log: ``u`` (T, m) as ``u_<name>``, ``y`` (T, p) as ``y_<name>``, then
        ``extra`` columns (e.g. ``ytrue_<name>``)."""
        u, y = np.atleast_2d(u), np.atleast_2d(y)
        cols = {f"u_{n}": u[:, j] for j, n in enumerate(input_names)}
        cols.update({f"y_{n}": y[:, j] for j, n in enumerate(output_names)})
        cols.update(extra or {})
        return cls.from_arrays(t, cols, meta)

    # -- reading values -------------------------------------------------------------------
    def where(self, i: int) -> str:
        """'row 17' (CSV line number) or 'message 17 (t = 0.16 s)' (MCAP)."""
        if self.row_word == "row":
            return f"row {int(self.lines[i])}"
        t = self.cells.get("t")
        return f"message {int(self.lines[i])}" + (
            f" (t = {float(t[i]):.6g} s)" if t is not None else "")

    def has(self, name: str) -> bool:
        return name in self.cells

    def require(self, name: str) -> None:
        if name not in self.cells:
            raise NnmpcError(f"{self.path}: no column '{name}' (it has: "
                             f"{', '.join(self.names) or 'no columns'})")

    def column(self, name: str, missing_ok: bool = False) -> np.ndarray:
        """The column as float64; one-line error at the first empty, non-numeric or
        non-finite value (with ``missing_ok`` only non-numeric values are errors; empty and
        non-finite ones read as NaN)."""
        key = (name, missing_ok)
        if key in self._float:
            return self._float[key]
        self.require(name)
        raw = self.cells[name]
        try:
            v = np.asarray(raw, dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(v))
        except ValueError:
            v, bad = None, None
        if bad is None and missing_ok:
            v = np.array([_lenient(c) for c in raw], dtype=np.float64)
            bad = np.zeros(0, dtype=int) if not np.isinf(v).any() else None
        if bad is None or (len(bad) and not missing_ok):
            for i, cell in enumerate(raw):
                problem = _bad_value(cell)
                if problem:
                    raise NnmpcError(f"{self.path}: {self.where(i)}, column {name}: {problem}")
        self._float[key] = v
        return v

    @property
    def t(self) -> np.ndarray:
        """``t`` in seconds, checked to increase strictly (and to have a row at all)."""
        if len(self) == 0:
            raise NnmpcError(f"{self.path}: no data rows (only "
                             + ("the header)" if self.row_word == "row" else "metadata)"))
        t = self.column("t")
        step = np.diff(t)
        bad = np.flatnonzero(~(step > 0))
        if len(bad):
            i = int(bad[0]) + 1
            raise NnmpcError(f"{self.path}: {self.where(i)}: t = {t[i]:.9g} s does not come "
                             f"after t = {t[i - 1]:.9g} s of the row before (t must increase)")
        return t

    def dt(self) -> float:
        """The sample period: the metadata's ``dt`` (or ``dt_s``), else the median step of t."""
        for key in ("dt", "dt_s"):
            if isinstance(self.meta.get(key), (int, float)) and self.meta[key] > 0:
                return float(self.meta[key])
        t = self.t
        return float(f"{np.median(np.diff(t)):.9g}") if len(t) > 1 else 0.0

    def unit(self, name: str) -> str:
        units = self.meta.get("units")
        return str(units.get(name, "")) if isinstance(units, dict) else ""

    def select(self, patterns: list[str] | tuple[str, ...], what: str) -> list[str]:
        """Columns matching any of ``patterns`` (names or fnmatch globs, comma-separated
        or repeated), in pattern order then file order; an error lists the columns when a
        pattern matches none."""
        pats = [p.strip() for pat in patterns for p in pat.split(",") if p.strip()]
        out: list[str] = []
        for pat in pats:
            hits = [n for n in self.names if n != "t" and fnmatch.fnmatchcase(n, pat)]
            if not hits:
                raise NnmpcError(f"{self.path}: {what} '{pat}' matches no column (it has: "
                                 f"{', '.join(self.names)})")
            out += [n for n in hits if n not in out]
        if not out:
            raise NnmpcError(f"{self.path}: no {what} columns selected")
        return out

    def matrix(self, names: list[str]) -> np.ndarray:
        return np.stack([self.column(n) for n in names], axis=-1) if names else \
            np.zeros((len(self), 0))

    def is_run(self) -> bool:
        """A run log (solver columns), not a collect log."""
        kind = self.meta.get("kind")
        if kind in ("run", "collect"):
            return kind == "run"
        return "status" in self.cells and "iterations" in self.cells


def _lenient(cell) -> float:
    """A cell as float: empty -> NaN; a non-number -> inf (flagged by the caller)."""
    s = str(cell).strip()
    if s == "":
        return math.nan
    try:
        return float(s)
    except ValueError:
        return math.inf


def _bad_value(cell) -> str | None:
    if isinstance(cell, (float, np.floating)):
        if math.isnan(cell):
            return "missing value"
        return None if math.isfinite(cell) else f"{cell} is not a finite number"
    s = str(cell).strip()
    if s == "":
        return "missing value (empty field)"
    try:
        v = float(s)
    except ValueError:
        return f"'{s}' is not a number"
    return None if math.isfinite(v) else f"'{s}' is not a finite number"


def strip_prefix(column: str) -> str:
    for p in ("ytrue_", "ref_", "y_", "u_"):
        if column.startswith(p):
            return column[len(p):]
    return column
