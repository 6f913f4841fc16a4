"""The run plot (reference against output, the inputs, the solver status and the x-y path)
and the collect-log plot (inputs and outputs against t)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runlog import STATUS_NAMES, RunLog

# marker colours of the solver statuses other than "converged"
STATUS_COLOURS = {1: "tab:orange", 2: "tab:red", 3: "black", 4: "tab:purple"}


def _bracket(unit: str) -> str:
    return f" [{unit}]" if unit else ""


def plot(log: RunLog, path: Path, title: str = "") -> Path:
    """PNG: reference vs output (top), inputs (middle), solver iterations with a marker at
    every period whose status is not "converged" (bottom, thin), axes in the plant's units;
    for two or more tracked outputs also the path (first two tracked outputs, reference vs
    actual)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = list(log.tracked)
    xy = len(tr) >= 2
    ratios = (3.0, 2.0, 1.0)
    if xy:
        fig = plt.figure(figsize=(13, 7))
        gs = fig.add_gridspec(3, 2, width_ratios=(1.0, 1.5), height_ratios=ratios)
        ap = fig.add_subplot(gs[:, 0])
        a1 = fig.add_subplot(gs[0, 1])
        a2 = fig.add_subplot(gs[1, 1], sharex=a1)
        a3 = fig.add_subplot(gs[2, 1], sharex=a1)
    else:
        fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(9, 7), sharex=True,
                                         gridspec_kw={"height_ratios": ratios})
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
    a2.legend(loc="upper right", fontsize=8)
    a2.grid(alpha=0.3)
    _status_axis(a3, t, log)
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


def _status_axis(ax, t: np.ndarray, log: RunLog) -> None:
    """Solver iterations per period; a marker (coloured by status) where it did not converge."""
    it = np.asarray(log.iterations, float)
    st = np.asarray(log.status, int)
    ax.step(t, it, where="post", color="0.35", lw=0.9, label="iterations")
    for code in sorted(set(st.tolist()) - {0}):
        sel = st == code
        ax.plot(t[sel], it[sel], "o", ms=3.5, color=STATUS_COLOURS.get(code, "tab:brown"),
                label=f"{STATUS_NAMES.get(code, str(code))} ({int(sel.sum())})")
    n_ok = int((st == 0).sum())
    ax.set_ylabel("solver\niterations", fontsize=8)
    ax.set_xlabel("t [s]")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=3))
    ax.set_ylim(bottom=0, top=max(1.0, float(it.max()) if len(it) else 1.0) * 1.7 + 0.5)
    ax.set_title(f"converged {n_ok} of {len(st)} periods", fontsize=8, loc="left", pad=2)
    ax.legend(loc="upper right", fontsize=7, ncol=4)
    ax.grid(alpha=0.3)


def plot_collect(table, path: Path, title: str = "") -> Path:
    """PNG of a collect log (:class:`~nnmpc.host.learn.logs.LogTable`): outputs (``y_``, with
    ``ytrue_`` dotted) and inputs (``u_``) against t, one axis per group and unit."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..learn.logs import strip_prefix

    t = table.t
    groups: dict[tuple[str, str], list[str]] = {}
    for c in table.names:
        kind = ("output" if c.startswith(("y_", "ytrue_")) else "input" if c.startswith("u_")
                else None)
        if kind:
            unit = table.unit(c) or table.unit("y_" + strip_prefix(c)) * c.startswith("ytrue_")
            groups.setdefault((kind, unit), []).append(c)
    if not groups:
        from ..errors import NnmpcError
        raise NnmpcError(f"{table.path}: nothing to plot: no u_ or y_ columns (it has: "
                         f"{', '.join(table.names)})")
    keys = sorted(groups, key=lambda k: (k[0] != "output", k[1]))
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 1.2 + 2.2 * len(keys)), sharex=True,
                             squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        colour = {}
        for c in groups[key]:
            name = strip_prefix(c)
            v = table.column(c)
            if c.startswith("ytrue_"):
                ax.plot(t, v, ":", lw=1.0, color=colour.get(name), label=f"{name} (noise-free)")
            elif c.startswith("u_"):
                ax.step(t, v, where="post", lw=1.0, label=name)
            else:
                line, = ax.plot(t, v, lw=1.0, label=name)
                colour[name] = line.get_color()
        ax.set_ylabel(key[0] + _bracket(key[1]))
        ax.legend(loc="upper right", fontsize=8, ncol=3)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("t [s]")
    meta = table.meta
    head = title or str(table.path.name)
    if meta.get("plant"):
        head += f": {meta['plant']}"
    axes[0, 0].set_title(f"{head}, {len(t)} rows over {t[-1] - t[0]:.4g} s", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
