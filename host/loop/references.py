"""Reference trajectories: the plant's ``step`` and ``sine`` references, or a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from ..plants import Plant
from .setups import setup_for


def reference(plant: Plant, kind: str, duration: float | None = None) -> np.ndarray:
    """Reference rows (T x p), one per control period, for ``step``, ``sine`` or a CSV file
    (see :func:`reference_csv`). Untracked outputs get 0."""
    st = setup_for(plant)
    p = len(plant.outputs)
    if kind not in ("step", "sine"):
        names = [s.name for s in plant.outputs]
        return reference_csv(Path(kind), names, [names[i] for i in st.tracked], plant.dt,
                             duration)
    T = int(round((duration or st.duration) / plant.dt))
    t = np.arange(T) * plant.dt
    rows = np.zeros((T, p))
    if kind == "step":
        seg = T // len(st.step_levels)
        for i, lvl in enumerate(st.step_levels):
            rows[i * seg:, list(st.tracked)] = lvl
    else:
        w = 2 * np.pi * st.sine_hz * t
        for j, ch in enumerate(st.tracked):
            wave = np.sin(w) if (j == 0 or not st.circle) else np.cos(w) - 1.0
            rows[:, ch] = st.sine_offset[j] + st.sine_amp[j] * wave
    return rows


def reference_csv(path: Path, outputs: list[str], tracked: list[str], dt: float,
                  duration: float | None = None) -> np.ndarray:
    """Reference rows from a CSV file: a column per tracked output (``NAME`` or ``ref_NAME``),
    and optionally a time column ``t`` (seconds, increasing): the path is then resampled to
    the control period ``dt`` by linear interpolation, from its first time to its last (a 5 s
    path runs 5 s). Without ``t`` each row is one period. ``duration`` cuts the reference or
    holds its last point until then. Lines starting with ``#`` are comments."""
    if not path.is_file():
        raise NnmpcError(f"--reference {path}: not 'step', 'sine' or a CSV file")
    with open(path, newline="") as fh:
        lines = [(n, row) for n, row in enumerate(fh, 1) if not row.startswith("#")]
    rd = csv.reader(row for _, row in lines)
    try:
        header = [h.strip() for h in next(rd)]
    except StopIteration:
        raise NnmpcError(f"{path}: no header row") from None
    data = list(rd)
    if not data:
        raise NnmpcError(f"{path}: no rows")
    cols = {}
    for name in tracked:
        col = next((c for c in (f"ref_{name}", name) if c in header), None)
        if col is None:
            raise NnmpcError(f"{path}: needs a column '{name}' or 'ref_{name}' "
                             f"(has {', '.join(header)})")
        cols[name] = header.index(col)
    if "t" in header:
        cols["t"] = header.index("t")
    vals = np.zeros((len(data), len(cols)))
    for r, row in enumerate(data):
        line = lines[r + 1][0]
        for j, (name, c) in enumerate(cols.items()):
            try:
                vals[r, j] = float(row[c])
            except (ValueError, IndexError):
                got = row[c] if c < len(row) else ""
                raise NnmpcError(f"{path}: row {line}, column {header[c]}: {got!r} is not a "
                                 "number") from None
            if not np.isfinite(vals[r, j]):
                raise NnmpcError(f"{path}: row {line}, column {header[c]}: not finite")
    series = vals[:, :len(tracked)]
    if "t" in cols:
        t = vals[:, -1]
        bad = np.nonzero(np.diff(t) <= 0)[0]
        if len(bad):
            raise NnmpcError(f"{path}: row {lines[bad[0] + 2][0]}, column t: time does not "
                             "increase")
        grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) / dt + 1e-9)) + 1) * dt
        series = np.column_stack([np.interp(grid, t, series[:, j]) for j in range(len(tracked))])
    if duration is not None:
        T = max(1, int(round(duration / dt)))
        series = series[:T] if len(series) >= T else np.vstack(
            [series, np.repeat(series[-1:], T - len(series), axis=0)])
    rows = np.zeros((len(series), len(outputs)))
    for j, name in enumerate(tracked):
        rows[:, outputs.index(name)] = series[:, j]
    return rows
