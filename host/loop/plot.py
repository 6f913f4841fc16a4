"""The run plot: reference against output, the inputs, and the x-y path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runlog import RunLog


def _bracket(unit: str) -> str:
    return f" [{unit}]" if unit else ""


def plot(log: RunLog, path: Path, title: str = "") -> Path:
    """PNG: reference vs output (top), inputs (bottom), axes in the plant's units; for two or
    more tracked outputs also the path (first two tracked outputs, reference vs actual)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = list(log.tracked)
    xy = len(tr) >= 2
    if xy:
        fig = plt.figure(figsize=(13, 6))
        gs = fig.add_gridspec(2, 2, width_ratios=(1.0, 1.5))
        ap = fig.add_subplot(gs[:, 0])
        a1 = fig.add_subplot(gs[0, 1])
        a2 = fig.add_subplot(gs[1, 1], sharex=a1)
    else:
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    t = log.t
    units = {log.unit(i) for i in tr}
    yu = units.pop() if len(units) == 1 else ""
    for i in tr:
        line, = a1.plot(t, log.y_true[:, i], label=f"{log.output_names[i]}")
        a1.plot(t, log.ref[:, i], "--", color=line.get_color(), lw=1,
                label=f"ref {log.output_names[i]}")
    a1.set_ylabel("output" + _bracket(yu))
    a1.legend(loc="upper right", fontsize=8, ncol=2)
    a1.grid(alpha=0.3)
    head = f"{log.plant}: {log.controller}, tracking RMS {log.rms():.3g}{(' ' + yu) if yu else ''}"
    if xy:
        pe = log.path_error()
        head += f", path error RMS {np.sqrt((pe ** 2).mean()):.3g} / max {pe.max():.3g}" \
                f"{(' ' + yu) if yu else ''}"
    a1.set_title(title or head, fontsize=10)
    iu = {log.unit(j, True) for j in range(len(log.input_names))}
    for j, n in enumerate(log.input_names):
        a2.step(t, log.u[:, j], where="post", label=f"u {n}")
    a2.set_ylabel("input" + _bracket(iu.pop() if len(iu) == 1 else ""))
    a2.set_xlabel("t [s]")
    a2.legend(loc="upper right", fontsize=8)
    a2.grid(alpha=0.3)
    if xy:
        i, j = tr[0], tr[1]
        ap.plot(log.ref[:, i], log.ref[:, j], "--", color="0.4", lw=1.2, label="reference")
        ap.plot(log.y_true[:, i], log.y_true[:, j], lw=1.2, label=f"{log.controller}")
        ap.plot(log.y_true[:1, i], log.y_true[:1, j], "o", ms=4, color="C0", label="start")
        ap.set_xlabel(log.output_names[i] + _bracket(log.unit(i)))
        ap.set_ylabel(log.output_names[j] + _bracket(log.unit(j)))
        ap.set_aspect("equal", adjustable="datalim")
        ap.set_title("path", fontsize=10)
        ap.legend(loc="best", fontsize=8)
        ap.grid(alpha=0.3)
    note = log.extra.get("start")
    if note:
        fig.text(0.01, 0.005, f"start: {note}", fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
