"""Reference trajectories: the plant's ``step`` and ``sine`` references, or a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from ..plants import Plant
from .setups import setup_for


def reference(plant: Plant, kind: str, duration: float | None = None) -> np.ndarray:
    """Reference rows (T x p) for ``step``, ``sine`` or a CSV file (columns named after
    the tracked outputs, or ``ref_<name>``; one row per period). Untracked outputs get 0."""
    st = setup_for(plant)
    p = len(plant.outputs)
    T = int(round((duration or st.duration) / plant.dt))
    t = np.arange(T) * plant.dt
    rows = np.zeros((T, p))
    if kind == "step":
        seg = T // len(st.step_levels)
        for i, lvl in enumerate(st.step_levels):
            rows[i * seg:, list(st.tracked)] = lvl
    elif kind == "sine":
        w = 2 * np.pi * st.sine_hz * t
        for j, ch in enumerate(st.tracked):
            wave = np.sin(w) if (j == 0 or not st.circle) else np.cos(w) - 1.0
            rows[:, ch] = st.sine_offset[j] + st.sine_amp[j] * wave
    else:
        rows = _reference_csv(plant, Path(kind))
    return rows


def _reference_csv(plant: Plant, path: Path) -> np.ndarray:
    if not path.is_file():
        raise NnmpcError(f"--reference {path}: not 'step', 'sine' or a CSV file")
    st = setup_for(plant)
    with open(path, newline="") as fh:
        rd = csv.DictReader(row for row in fh if not row.startswith("#"))
        data = list(rd)
    if not data:
        raise NnmpcError(f"{path}: no rows")
    rows = np.zeros((len(data), len(plant.outputs)))
    for ch in st.tracked:
        name = plant.outputs[ch].name
        col = next((c for c in (f"ref_{name}", name) if c in data[0]), None)
        if col is None:
            raise NnmpcError(f"{path}: needs a column '{name}' or 'ref_{name}' "
                             f"(has {', '.join(data[0])})")
        try:
            rows[:, ch] = [float(r[col]) for r in data]
        except ValueError as e:
            raise NnmpcError(f"{path}: column {col}: {e}") from None
    return rows
