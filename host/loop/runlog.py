"""A run's telemetry log (:class:`RunLog`): tracking and path errors, the CSV it writes and
the summary figures."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STATUS_NAMES = {0: "converged", 1: "iteration cap", 2: "time budget", 3: "non-finite",
                4: "bad config"}


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
        pts, path = self.y_true[:, tr], self.ref[:, tr]
        a, b = path[:-1], path[1:]
        ab = b - a
        L2 = np.maximum((ab ** 2).sum(axis=1), 1e-12)
        out = np.empty(len(pts))
        for i, q in enumerate(pts):
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
