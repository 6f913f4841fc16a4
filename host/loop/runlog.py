"""A run's telemetry log (:class:`RunLog`): tracking and path errors, the CSV it writes and
the summary figures."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NnmpcError

STATUS_NAMES = {0: "converged", 1: "iteration cap", 2: "time budget", 3: "non-finite",
                4: "bad config", 5: "bad measurement", 6: "link lost"}


@dataclass
class RunLog:
    plant: str
    controller: str
    dt: float
    tracked: tuple[int, ...]
    output_names: list[str]
    input_names: list[str]
    ref: np.ndarray        # T x p
    y: np.ndarray          # T x p, as measured (sent to the device)
    y_true: np.ndarray     # T x p, noise-free
    u: np.ndarray          # T x m
    iterations: np.ndarray
    status: np.ndarray
    residual: np.ndarray
    work: np.ndarray       # clock ticks per period, as the device measured them
    clock_hz: int
    lost: int = 0
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)
    output_units: list[str] = field(default_factory=list)
    input_units: list[str] = field(default_factory=list)

    def unit(self, i: int, inputs: bool = False) -> str:
        units = self.input_units if inputs else self.output_units
        return units[i] if i < len(units) else ""

    @property
    def t(self) -> np.ndarray:
        return np.arange(len(self.u)) * self.dt

    def rms(self, true: bool = True) -> float:
        tr = list(self.tracked)
        y = self.y_true if true else self.y
        return float(np.sqrt(((y[:, tr] - self.ref[:, tr]) ** 2).mean()))

    def path_error(self) -> np.ndarray:
        """Distance (output units) of each true output to the reference path (the polyline
        through the reference points, tracked outputs only)."""
        tr = list(self.tracked)
        return path_error(self.y_true[:, tr], self.ref[:, tr])


def path_error(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Distance of each point of ``y`` (T x 2 or more, the tracked outputs) to the reference
    path: the polyline through the points of ``ref``."""
    a, b = ref[:-1], ref[1:]
    ab = b - a
    L2 = np.maximum((ab ** 2).sum(axis=1), 1e-12)
    out = np.empty(len(y))
    for i, q in enumerate(y):
        tt = np.clip(((q - a) * ab).sum(axis=1) / L2, 0.0, 1.0)
        d = a + tt[:, None] * ab - q
        out[i] = np.sqrt((d ** 2).sum(axis=1)).min()
    return out


START_NOTE = "plant at rest at the reference's first point, errors over the whole run"


def write_csv(log: RunLog, path: Path) -> Path:
    """Telemetry CSV: t, ref_* (tracked outputs), y_* (all outputs, as measured), u_*, then
    iterations, status, residual, work_us (device clock; emulated boards are not cycle exact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tr = list(log.tracked)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t", *(f"ref_{log.output_names[i]}" for i in tr),
                    *(f"y_{n}" for n in log.output_names), *(f"u_{n}" for n in log.input_names),
                    "iterations", "status", "residual", "work_us"])
        for k in range(len(log.u)):
            w.writerow([f"{log.t[k]:.4f}", *(f"{log.ref[k, i]:.6g}" for i in tr),
                        *(f"{v:.6g}" for v in log.y[k]), *(f"{v:.6g}" for v in log.u[k]),
                        int(log.iterations[k]), int(log.status[k]), f"{log.residual[k]:.6g}",
                        f"{1e6 * log.work[k] / max(1, log.clock_hz):.1f}"])
    return path


def summary(log: RunLog) -> dict:
    """A run's figures: periods, tracking and path error (noise-free outputs), iterations,
    solver status counts, lost frames, emulated work per period, the start condition."""
    w_us = 1e6 * log.work / max(1, log.clock_hz)
    out = {"plant": log.plant, "controller": log.controller, "periods": int(len(log.u)),
           "tracking_rms": round(log.rms(), 4), "tracking_rms_measured": round(log.rms(False), 4),
           "iterations_mean": round(float(np.mean(log.iterations)), 2),
           "iterations_max": int(np.max(log.iterations)),
           "status_counts": {STATUS_NAMES.get(int(s), str(s)): int(n)
                             for s, n in zip(*np.unique(log.status, return_counts=True))},
           "work_us_median_emulated": round(float(np.median(w_us)), 1),
           "lost_frames": log.lost, "wall_s": round(log.wall_s, 2),
           "units": log.unit(log.tracked[0]) if log.tracked else "",
           "start": log.extra.get("start", "")}
    if len(log.tracked) >= 2:
        pe = log.path_error()
        out["path_error_rms"] = round(float(np.sqrt((pe ** 2).mean())), 4)
        out["path_error_max"] = round(float(pe.max()), 4)
    return out


# -- reading run logs back, and run logs as tables (CSV or MCAP: see loop/logs.py) -------------
def run_metadata(log: RunLog) -> dict:
    """The run's metadata as a JSON-able dict (for a ``# {json}`` CSV line or the MCAP
    metadata record): plant, controller, dt, tracked outputs, clock, units."""
    units = {f"y_{n}": log.unit(i) for i, n in enumerate(log.output_names) if log.unit(i)}
    units.update({f"ytrue_{n}": log.unit(i) for i, n in enumerate(log.output_names)
                  if log.unit(i)})
    units.update({f"ref_{log.output_names[i]}": log.unit(i) for i in log.tracked
                  if log.unit(i)})
    units.update({f"u_{n}": log.unit(j, True) for j, n in enumerate(log.input_names)
                  if log.unit(j, True)})
    units.update({"t": "s", "work_us": "us"})
    meta = {"kind": "run", "plant": log.plant, "controller": log.controller, "dt": log.dt,
            "tracked": [log.output_names[i] for i in log.tracked], "clock_hz": log.clock_hz,
            "lost": log.lost, "units": units}
    if log.extra.get("start"):
        meta["start"] = log.extra["start"]
    return meta


def run_table(log: RunLog):
    """The run as a :class:`~nnmpc.host.learn.logs.LogTable`: t, ref_<tracked>, y_<all>,
    ytrue_<all>, u_<inputs>, iterations, status, residual, work_us."""
    from ..learn.logs import LogTable

    tr = list(log.tracked)
    cols = {f"ref_{log.output_names[i]}": log.ref[:, i] for i in tr}
    cols.update({f"y_{n}": log.y[:, i] for i, n in enumerate(log.output_names)})
    cols.update({f"ytrue_{n}": log.y_true[:, i] for i, n in enumerate(log.output_names)})
    cols.update({f"u_{n}": log.u[:, j] for j, n in enumerate(log.input_names)})
    cols.update(iterations=log.iterations, status=log.status, residual=log.residual,
                work_us=1e6 * np.asarray(log.work, float) / max(1, log.clock_hz))
    return LogTable.from_arrays(log.t, cols, run_metadata(log))


def run_from_table(table) -> RunLog:
    """A :class:`RunLog` from a run log read back (CSV or MCAP): names from the ``y_``/
    ``u_``/``ref_`` columns, noise-free outputs from ``ytrue_`` if present (else the measured
    ones), plant, controller and units from the metadata if present (else the plant's units,
    if the metadata or the file name names a known plant)."""
    from ..learn.logs import strip_prefix
    from ..plants import PLANTS, get_plant

    meta = table.meta
    t = table.t
    y_cols = [c for c in table.names if c.startswith("y_")]
    u_cols = [c for c in table.names if c.startswith("u_")]
    outs, ins = [strip_prefix(c) for c in y_cols], [strip_prefix(c) for c in u_cols]
    if not y_cols or not u_cols:
        missing = "y_<output>" if not y_cols else "u_<input>"
        raise NnmpcError(f"{table.path}: not a run log: no {missing} column (it has: "
                         f"{', '.join(table.names)})")
    T = len(t)
    y = table.matrix(y_cols)
    ref = np.full((T, len(outs)), np.nan)
    tracked = []
    for i, n in enumerate(outs):
        if table.has(f"ref_{n}"):
            ref[:, i] = table.column(f"ref_{n}", missing_ok=True)
            tracked.append(i)
    has_true = all(table.has(f"ytrue_{n}") for n in outs)
    y_true = (np.stack([table.column(f"ytrue_{n}", missing_ok=True) for n in outs], axis=-1)
              if has_true else y.copy())

    def col(name, default=0.0):
        return table.column(name, missing_ok=True) if table.has(name) else np.full(T, default)

    if table.has("work_us") or not table.has("work"):
        work, clock = col("work_us"), 1_000_000
    else:
        work, clock = col("work"), int(meta.get("clock_hz") or 0)
    plant = str(meta.get("plant") or table.path.stem.split("_")[0])
    units = meta.get("units") if isinstance(meta.get("units"), dict) else {}
    p = get_plant(plant) if plant in PLANTS else None
    pu = {s.name: s.unit for s in (*p.outputs, *p.inputs)} if p else {}
    extra = {"start": meta.get("start", "")} if meta.get("start") else {}
    if not has_true:
        extra["y_true"] = "not in the log: the measured outputs stand in"
    return RunLog(plant, str(meta.get("controller") or ""), table.dt(), tuple(tracked), outs,
                  ins, ref, y, y_true, table.matrix(u_cols),
                  np.nan_to_num(col("iterations")).astype(int),
                  np.nan_to_num(col("status")).astype(int), col("residual"),
                  work, clock, int(meta.get("lost") or 0), 0.0, extra,
                  output_units=[units.get(c) or pu.get(n, "") for c, n in zip(y_cols, outs)],
                  input_units=[units.get(c) or pu.get(n, "") for c, n in zip(u_cols, ins)])


def read_csv(path: Path) -> RunLog:
    """Read a run log CSV (as :func:`write_csv` writes it, with or without ``ytrue_``
    columns and a ``# {json}`` metadata line) back into a :class:`RunLog`."""
    from ..learn.logs import read_csv_table

    return run_from_table(read_csv_table(path))
