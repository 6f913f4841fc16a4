"""What a sweep leaves behind: the Pareto front (table and plot), every trial as CSV, and the
chosen net exported and compiled in ``best/``."""

from __future__ import annotations

import base64
import csv
import json
import shutil
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from .space import NetParams

OBJECTIVES = ("tracking", "cycles_max", "flash")


def _state(t) -> str:
    return t.state.name.lower()


def params_of(t) -> NetParams | None:
    p = t.user_attrs.get("params")
    return NetParams(**p) if p else None


def feasible(t) -> bool:
    return (_state(t) == "complete" and t.values is not None
            and all(v <= 0 for v in t.user_attrs.get("constraints", {}).values()))


def pareto_front(trials) -> list:
    """Complete trials within every budget that no other such trial dominates on
    (tracking error, worst-period cycles, flash)."""
    ok = [t for t in trials if feasible(t) and "repeat_of" not in t.user_attrs]
    front = []
    for t in ok:
        a = np.asarray(t.values, float)
        if not any(np.all(np.asarray(o.values) <= a) and np.any(np.asarray(o.values) < a)
                   for o in ok if o is not t):
            front.append(t)
    return sorted(front, key=lambda t: tuple(t.values))


def choose(front: list, tolerance: float = 0.0, baseline=None):
    """The net to put on the board. With the plant's default net (``baseline``) in the study:
    the smallest net on the front (least flash, then best tracking) whose closed-loop path
    error is no worse than the default's and which needs less flash, if there is one. Else
    the net that tracks best within the budgets; nets within ``tolerance`` (relative) of the
    best tracking count as equal, and of those the one with the least flash, then the fewest
    cycles, is chosen."""
    if not front:
        return None
    pe = (baseline.user_attrs.get("path_error") if baseline is not None and baseline.values
          else None)
    if pe is not None:
        smaller = [t for t in front if t.user_attrs.get("path_error") is not None
                   and t.user_attrs["path_error"] <= pe and t.values[2] < baseline.values[2]]
        if smaller:
            return min(smaller, key=lambda t: (t.values[2], t.values[0], t.number))
    best = min(t.values[0] for t in front)
    near = [t for t in front if t.values[0] <= best * (1 + tolerance)]
    return min(near, key=lambda t: (t.values[2], t.values[1], t.values[0], t.number))


def trial_rows(trials, references: tuple[str, ...], front=(), chosen=None) -> list[dict]:
    on_front = {t.number for t in front}
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        u = t.user_attrs
        p = u.get("params", {})
        row = {"number": t.number, "state": _state(t), "worker": u.get("worker", ""),
               "net": u.get("net", ""), **{k: p.get(k, "") for k in (
                   "kind", "depth", "width", "activation", "precision", "lags", "gru",
                   "horizon", "moves")},
               "score": u.get("score", ""),
               "val_rmse": _fmt(u.get("val_rmse_mean")), "tracking": _fmt(u.get("tracking")),
               "path_error": _fmt(u.get("path_error")),
               "replay": _fmt(u.get("replay")),
               "replay_one_step_rmse": _fmts(u.get("replay_one_step_rmse")),
               "replay_free_run_rmse": _fmts(u.get("replay_free_run_rmse"))}
        loops = u.get("loops", {})
        for ref in references:
            row[f"{ref}_tracking_rms"] = _fmt(loops.get(ref, {}).get("tracking_rms"))
            row[f"{ref}_path_error_rms"] = _fmt(loops.get(ref, {}).get("path_error_rms"))
        row.update({k: u.get(k, "") for k in (
            "cycles_measure", "cycles_max", "cycles_mean", "period_cycles", "fits_period",
            "flash", "ram", "estimate_flash", "estimate_ram", "n_params", "epochs_run",
            "int8_model_flash", "float_model_flash", "int8_predict_cycles")})
        row["int8_val_rmse"] = _fmt(u.get("int8_val_rmse_mean"))
        row.update({k: u.get(k, "") for k in ("pruned", "error", "repeat_of")})
        row["seconds"] = u.get("seconds", {}).get("total", "")
        row["pareto"] = int(t.number in on_front)
        row["chosen"] = int(chosen is not None and t.number == chosen.number)
        rows.append(row)
    return rows


def _fmt(v):
    return "" if v is None else float(f"{v:.6g}")


def _fmts(v):
    """A per-output list as 'a;b;c'."""
    return "" if not v else ";".join(f"{x:.6g}" for x in v)


def write_csv(rows: list[dict], path: Path) -> Path:
    cols = list(rows[0]) if rows else ["number", "state"]
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
    return path


def front_table(front: list, chosen, units: str, period_cycles: int, clock_hz: int) -> str:
    replay = any(t.user_attrs.get("score") == "replay" for t in front)
    head = (f"{'':1} {'trial':>5}  {'net':<30} {'replay' if replay else 'tracking':>10} "
            f"{'path err':>9} "
            f"{'worst period':>22} {'flash':>9} {'RAM':>8} {'val RMSE':>9}")
    lines = [head, "-" * len(head)]
    for t in front:
        u = t.user_attrs
        mark = "*" if chosen is not None and t.number == chosen.number else ""
        cyc = u["cycles_max"]
        pe = f"{u['path_error']:.4f}" if "path_error" in u else "-"
        lines.append(
            f"{mark:1} {t.number:>5}  {u['net']:<30} {u['tracking']:>7.4f} {units:<2} {pe:>9} "
            f"{cyc:>9,} cyc {100 * cyc / period_cycles:>5.1f} %  {u['flash']:>7,} B "
            f"{u['ram']:>6,} B {u['val_rmse_mean']:>9.4f}")
    if replay:
        lines.append("replay: open-loop (NARX) or one-step (fk) RMSE of the held-out log "
                     "through the host build of the C (no simulator: no closed loop); cycles: "
                     "one model_jacobian call (a lower bound of the period, "
                     f"{period_cycles:,} cycles at {clock_hz / 1e6:g} MHz); * the chosen net")
    else:
        lines.append(f"worst period: estimated Cortex-M4 cycles of the step reference's worst "
                     f"period against the period ({period_cycles:,} cycles at "
                     f"{clock_hz / 1e6:g} MHz); * the chosen net")
    return "\n".join(lines)


def plot_front(path: Path, trials, front, chosen, period_cycles: int, title: str,
               units: str) -> Path:
    """Tracking error against worst-period cycles, coloured by flash, with the budget line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in trials if _state(t) == "complete" and t.values is not None]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    if done:
        x = np.array([t.user_attrs["cycles_max"] for t in done], float)
        y = np.array([t.user_attrs["tracking"] for t in done], float)
        f = np.array([t.user_attrs["flash"] for t in done], float) / 1024
        ok = np.array([feasible(t) for t in done])
        sc = ax.scatter(x[ok], y[ok], c=f[ok], cmap="viridis", s=36, label="within budgets",
                        vmin=f.min(), vmax=f.max()) if ok.any() else None
        if (~ok).any():
            sc2 = ax.scatter(x[~ok], y[~ok], c=f[~ok], cmap="viridis", s=36, marker="X",
                             vmin=f.min(), vmax=f.max(), label="over the period")
            sc = sc or sc2
        fig.colorbar(sc, ax=ax, label="flash (KB)")
        if front:
            ax.scatter([t.user_attrs["cycles_max"] for t in front],
                       [t.user_attrs["tracking"] for t in front], s=70, facecolors="none",
                       edgecolors="black", lw=1, label="Pareto front")
        if y.max() > 10 * max(y.min(), 1e-12):
            ax.set_yscale("log")
        if chosen is not None:
            ax.scatter([chosen.user_attrs["cycles_max"]], [chosen.user_attrs["tracking"]],
                       s=160, facecolors="none", edgecolors="red", lw=1.5,
                       label=f"chosen (trial {chosen.number})")
    ax.axvline(period_cycles, color="red", ls="--", lw=1,
               label=f"period: {period_cycles:,} cycles")
    ax.set_xlabel("worst-period cycles (Cortex-M4 estimate)")
    ax.set_ylabel(f"tracking error ({units})")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".part.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def export_best(t, ctx, out: Path, study_name: str) -> Path:
    """The chosen net in ``out``: model.keras/.tflite/_int8.tflite/.onnx/.json (as `nnmpc
    train` exports), compiled to C in ``out/model`` (the folder `nnmpc run --model` takes), and
    sweep.json with its controller settings and figures."""
    from nnmpc.compiler import compile_model

    from ..learn.export import export_all, representative_subset
    from ..learn.mlenv import import_keras

    p = params_of(t)
    blob = t.user_attrs.get("model_keras_b64")
    if blob is None:
        raise NnmpcError(f"trial {t.number} has no stored model")
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    src = tmp / "trained.keras"
    src.write_bytes(base64.b64decode(blob))
    model = import_keras().models.load_model(src, compile=False)
    src.unlink()
    ds = ctx.dataset(p.kind, p.lags)
    u = {k: v for k, v in t.user_attrs.items() if k != "model_keras_b64"}
    meta = {**ctx.describe(p.kind, p.lags), "kind": p.kind, "model": "model",
            "gru_units": p.gru or None,
            "input_layout": ("[y[k..k-ny+1], u[k..k-nu+1]]" + (
                " (a fixed selection layer makes the GRU's window of [y, u] rows)"
                if p.gru else "") if p.kind == "narx" else "u"),
            "architecture": p.describe(), "hidden": list(p.hidden), "activation": p.activation,
            "lags": {"ny": p.lags, "nu": p.lags} if p.kind == "narx" else None,
            "normalisation": "folded into the model: raw physical units in and out",
            "validation": {"rmse": u.get("val_rmse")},
            "sweep": {"study": study_name, "trial": t.number}}
    rep = representative_subset(ds.x_train, 200, seed=ctx.seed, y=ds.y_train)
    export_all(model, tmp, "model", meta, rep)
    compile_model(tmp / "model.keras", tmp / "model", name="model")
    settings = {"controller": "nr", "horizon": p.horizon or 1, "moves": p.moves or 1,
                "budget_us": ctx.budget_us, "rate_hz": ctx.rate_hz, "board": ctx.target.name}
    (tmp / "sweep.json").write_text(json.dumps(
        {"study": study_name, "trial": t.number, "params": u.get("params"),
         "controller": settings, "figures": u}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def baseline_of(trials):
    """The completed trial of the plant's default net, if the study has one."""
    for t in trials:
        if t.user_attrs.get("baseline") and t.values:
            return t
    return None
