"""The validation plot of a trained net: predicted against true, and the free run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def plot_validation(path: Path, ds, y_pred: np.ndarray, title: str, n: int = 400,
                    y_free: np.ndarray | None = None) -> None:
    """Predicted vs true on validation data: time series (left) and scatter (right); for
    NARX nets also the free-run simulation of the first validation trajectory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = len(ds.output_names)
    fig, axes = plt.subplots(m, 2, figsize=(10, 2.6 * m), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1]})
    k = min(n, len(ds.y_val))
    for j, (name, unit) in enumerate(ds.output_names):
        ax = axes[j][0]
        ax.plot(ds.y_val[:k, j], lw=1.2, label="true (measured)")
        ax.plot(y_pred[:k, j], lw=1.0, ls="--", label="predicted (one step)"
                if y_free is not None else "predicted")
        if y_free is not None:
            ax.plot(y_free[:k, j], lw=1.0, ls=":", label="free run")
        ax.set_ylabel(f"{name} [{unit}]")
        ax.grid(alpha=0.3)
        if j == 0:
            ax.legend(loc="upper right", fontsize=8)
        ax = axes[j][1]
        ax.plot(ds.y_val[:, j], y_pred[:, j], ".", ms=2, alpha=0.5)
        lo, hi = float(ds.y_val[:, j].min()), float(ds.y_val[:, j].max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.set_xlabel(f"true {name} [{unit}]")
        ax.set_ylabel("predicted")
        ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel("validation sample" + (" (time steps)" if ds.kind != "fk" else ""))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fig.savefig(fh, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)
