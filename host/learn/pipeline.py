"""`nnmpc train` as a function: simulate a plant (or read a log), train a net on it, plot and
export it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from ..plants import PLANTS, NetSpec, get_plant
from ..progress import Progress, step
from .datasets import (Dataset, identify_input_lag, lag_filter, make_dataset,
                       series_dataset)
from .logs import LogTable, read_log, strip_prefix
from .export import export_all, representative_subset, run_tflite
from .plots import plot_validation
from .train import ACTIVATIONS, TrainResult, free_run, train_gru, train_mlp


@dataclass
class TrainOptions:
    """What to train; ``None`` takes the plant's default net (``nnmpc plants``)."""

    plant: str | None = None
    out: Path = Path("models")
    kind: str | None = None            # fk, dyn or narx
    hidden: tuple[int, ...] | None = None
    activation: str = "tanh"
    gru: int | None = None             # GRU units first (narx only)
    skip: bool | None = None           # linear input-to-output path (default: dyn/narx MLPs)
    lags: tuple[int, int] | None = None
    epochs: int | None = None
    patience: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    samples: int | None = None
    save_data: bool = False
    input_lag: float | None = None     # --data, fk: actuator lag in s (None: identify; 0: none)
    data: Path | None = None           # train from this log instead of simulating a plant
    inputs: tuple[str, ...] = ("u_*",)  # log columns: names or fnmatch globs
    outputs: tuple[str, ...] = ("y_*",)


@dataclass
class TrainOutcome:
    plant: str
    kind: str
    gru: bool
    architecture: str
    params: int
    dataset: Dataset
    result: TrainResult
    free_run_rmse: np.ndarray | None
    int8_rmse: np.ndarray
    files: list[Path]


def _arch(n_in, n_out, hidden, activation, gru=None, window=None, skip=False) -> str:
    head = f"{window}x{n_in} -> GRU {gru}" if gru else f"{n_in}"
    mid = "".join(f" -> {h} {activation}" for h in hidden)
    return f"{head}{mid} -> {n_out}" + (" (+ linear skip)" if skip else "")


def _feature_limits(limits: dict[str, tuple[float | None, float | None]],
                    names: list[tuple[str, str]]) -> list[dict]:
    """Model input/output metadata: name, unit and the limits of the signal it is a lag of."""
    out = []
    for name, unit in names:
        lo, hi = limits.get(name.split("[")[0], (None, None))
        out.append({"name": name, "unit": unit, "low": lo, "high": hi})
    return out


def _plant_limits(plant) -> dict:
    lim = {}
    for s in (*plant.inputs, *plant.outputs, *plant.states):
        lim.setdefault(s.name, (s.low, s.high))
    return lim


@dataclass
class _Job:
    """What the shared train -> plot -> export half needs, from a plant or from a log."""

    name: str                 # plant name or log stem: the files are NAME_KIND[_gru].*
    describe: dict            # plant.describe() or the log's equivalent (metadata JSON)
    limits: dict              # signal name -> (low, high)
    ds: Dataset
    kind: str
    hidden: tuple[int, ...]
    lags: tuple[int, int]
    epochs: int
    gru: int | None
    window: int | None
    skip: bool
    samples: int


def _resolve(o: TrainOptions, spec) -> tuple:
    """Kind, hidden, lags, epochs, GRU, window and skip from the options and the defaults."""
    kind = o.kind or spec.kind
    hidden = tuple(o.hidden) if o.hidden is not None else spec.hidden
    lags = tuple(o.lags) if o.lags is not None else spec.lags
    epochs = spec.epochs if o.epochs is None else o.epochs
    gru = o.gru
    if gru is not None and kind != "narx":
        raise NnmpcError("--gru needs --kind narx (the GRU reads a window of past outputs "
                         "and inputs)")
    if o.lags is not None and kind != "narx":
        raise NnmpcError("--lags applies to --kind narx only")
    if gru is not None and o.skip:
        raise NnmpcError("--skip adds a linear input-to-output path to an MLP; it does not "
                         "apply with --gru")
    skip = (kind in ("dyn", "narx") and not gru) if o.skip is None else o.skip
    window = max(lags) if gru else None
    return kind, hidden, lags, epochs, gru, window, skip


def _check_options(o: TrainOptions) -> Path:
    if o.activation not in ACTIVATIONS:
        raise NnmpcError(f"unknown activation '{o.activation}' "
                         f"(known: {', '.join(ACTIVATIONS)})")
    for opt, val, ok in (("--patience", o.patience, o.patience >= 1),
                         ("--batch-size", o.batch_size, o.batch_size >= 1),
                         ("--lr", o.lr, o.lr > 0),
                         ("--gru", o.gru, o.gru is None or o.gru >= 1)):
        if not ok:
            raise NnmpcError(f"{opt} {val} is out of range (must be positive)")
    if o.hidden is not None and any(int(h) < 1 for h in o.hidden):
        raise NnmpcError(f"hidden sizes must be positive, got {','.join(map(str, o.hidden))}")
    if o.epochs is not None and o.epochs < 1:
        raise NnmpcError("--epochs must be at least 1")
    out = Path(o.out)
    if out.exists() and not out.is_dir():
        raise NnmpcError(f"--out {out}: exists and is not a folder")
    return out


def train_plant(o: TrainOptions) -> TrainOutcome:
    """Train from ``o.data`` (a collect log, see :func:`train_log`) or simulate ``o.plant``;
    train the net, plot the validation data and export every format to ``o.out``; progress
    on stdout."""
    if o.data is not None:
        return train_log(o)
    if o.plant is None:
        raise NnmpcError("give a plant to simulate (--plant) or a log to train from (--data)")
    out = _check_options(o)
    plant = get_plant(o.plant)
    spec = plant.default_net
    kind, hidden, lags, epochs, gru, window, skip = _resolve(o, spec)
    samples = spec.samples if o.samples is None else o.samples
    total = 4
    step(1, total, f"simulating {plant.name}: {plant.description} "
                   f"({samples} samples, {kind} data, seed {o.seed})")
    ds = make_dataset(plant, kind, samples, seed=o.seed, lags=lags, gru_window=window)
    job = _Job(plant.name, plant.describe(), _plant_limits(plant), ds, kind, hidden, lags,
               epochs, gru, window, skip, samples)
    return _train_export(o, out, job)


def _log_signals(table: LogTable, patterns, what: str, plant_sigs, data_limits: bool):
    """(columns, [(name, unit)], {name: (low, high)}) of the selected columns."""
    cols = table.select(list(patterns), what)
    by_name = {s.name: s for s in plant_sigs or ()}
    names, limits = [], {}
    for c in cols:
        name = strip_prefix(c)
        s = by_name.get(name)
        unit = table.unit(c) or (s.unit if s else "")
        names.append((name, unit))
        if s is not None:
            limits[name] = (float(s.low), float(s.high))
        elif data_limits:
            v = table.column(c)
            limits[name] = (float(v.min()), float(v.max()))
    return cols, names, limits


def train_log(o: TrainOptions) -> TrainOutcome:
    """``nnmpc train --data LOG``: train on a collect log (CSV or MCAP, see
    :mod:`nnmpc.host.learn.logs`) instead of a simulation. Names, units and limits come from
    the plant the log's metadata names (if it is a known plant), else from the columns (units
    from the metadata) and the data's range. The validation split is by contiguous segments
    (:func:`~nnmpc.host.learn.datasets.series_dataset`). Bad data raises one NnmpcError line
    naming the file, the row and the column, before anything is written."""
    out = _check_options(o)
    return _train_export(o, out, log_job(o))


def log_job(o: TrainOptions) -> _Job:
    """The data half of :func:`train_log`: read and check the log, pick its columns and build
    the data set (``job.ds``; names, units and limits in ``job.describe``), writing nothing
    (``nnmpc sweep --data`` trains every trial on this)."""
    if o.plant is not None:
        raise NnmpcError("--plant and --data exclude each other: the data comes from the log "
                         "(its metadata may name the plant)")
    if o.samples is not None:
        raise NnmpcError("--samples applies to --plant only (a log has the rows it has)")
    _check_options(o)
    path = Path(o.data)
    table = read_log(path)
    t = table.t
    plant = None
    pname = table.meta.get("plant")
    if isinstance(pname, str) and pname in PLANTS:
        plant = get_plant(pname)
    spec = plant.default_net if plant else NetSpec("narx")
    kind, hidden, lags, epochs, gru, window, skip = _resolve(o, spec)
    if kind == "dyn":  # refused before the log's values are checked: it cannot work at all
        series_dataset("dyn", np.zeros((0, 1)), np.zeros((0, 1)), [], [])
    in_cols, in_names, in_lim = _log_signals(table, o.inputs, "--inputs",
                                             plant.inputs if plant else None, True)
    out_cols, out_names, out_lim = _log_signals(table, o.outputs, "--outputs",
                                                plant.outputs if plant else None, True)
    both = sorted(set(in_cols) & set(out_cols))
    if both:
        raise NnmpcError(f"{path}: column {both[0]} is picked both by --inputs and --outputs")
    u, y = table.matrix(in_cols), table.matrix(out_cols)
    dt = table.dt()
    name = pname if isinstance(pname, str) and pname else path.stem
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    limits = {**in_lim, **out_lim}
    describe = {
        "plant": name, "description": (plant.description if plant else f"log {path.name}"),
        "dt_s": dt, "sample_rate_hz": 1.0 / dt if dt > 0 else None,
        "inputs": [{"name": n, "unit": un, "low": limits[n][0], "high": limits[n][1]}
                   for n, un in in_names],
        "outputs": [{"name": n, "unit": un, "low": limits[n][0], "high": limits[n][1]}
                    for n, un in out_names],
        "states": [s.as_dict() for s in plant.states] if plant else [],
        "noise_std": list(plant.noise_std) if plant else [],
        "limits_from": "plant" if plant else "data range",
        "source": {"log": str(path), "rows": int(len(t)), "t0_s": float(t[0]),
                   "t1_s": float(t[-1]), "inputs": in_cols, "outputs": out_cols,
                   "metadata": table.meta},
    }
    if kind == "fk" and o.input_lag != 0:
        # fk pairs each output with the input it settled at: through the actuator lag, that is
        # the lagged input (identified from the log unless given).
        tau, fit = (identify_input_lag(u, y, dt) if o.input_lag is None
                    else (float(o.input_lag), float("nan")))
        describe["input_lag_s"] = tau
        describe["input_lag_note"] = ("fk features are the inputs through a first-order lag of "
                                      "this time constant" + (" (identified from the log)"
                                                              if o.input_lag is None else ""))
        u = lag_filter(u, tau, dt)
        step(0, 4, f"actuator lag {tau * 1e3:.3g} ms" + (f" (identified: quadratic fit RMS "
                                                          f"{fit:.3g})" if o.input_lag is None
                                                          else " (--input-lag)"))
    ds = series_dataset(kind, u, y, in_names, out_names, lags=lags, gru_window=window,
                        meta=describe, source=str(path))
    total = 4
    step(1, total, f"reading {path}: {len(t)} rows over {t[-1] - t[0]:.4g} s "
                   f"(dt {dt * 1e3:.4g} ms), inputs {', '.join(in_cols)}, outputs "
                   f"{', '.join(out_cols)}; {kind} data" + (f" (plant {plant.name})" if plant
                                                            else ""))
    return _Job(name, describe, limits, ds, kind, hidden, lags, epochs, gru, window, skip,
                int(len(t)))


def _train_export(o: TrainOptions, out: Path, job: _Job) -> TrainOutcome:
    """The shared half: train on ``job.ds``, plot, export into ``out``."""
    ds, kind, hidden, lags, gru, window, skip, epochs = (
        job.ds, job.kind, job.hidden, job.lags, job.gru, job.window, job.skip, job.epochs)
    stem = f"{job.name}_{kind}" + ("_gru" if gru else "")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NnmpcError(f"--out {out}: cannot create the folder: {e.strerror}") from None
    total = 4
    n_in = ds.x_train.shape[-1]
    n_out = ds.y_train.shape[-1]
    arch = _arch(n_in, n_out, hidden, o.activation, gru, window, skip)
    if o.save_data:
        ds.save(out / f"{stem}_data.npz")

    step(2, total, f"training {arch} (Keras, up to {epochs} epochs, early stopping)")
    kw = dict(hidden=hidden, activation=o.activation, epochs=epochs, seed=o.seed,
              patience=o.patience, batch_size=o.batch_size, lr=o.lr, name=stem)
    with Progress("epochs", epochs) as bar:
        def on_epoch(e, loss, vl):
            bar.update(e + 1, f"loss {loss:.2e} val {vl:.2e}")

        if gru:
            res = train_gru(ds.x_train, ds.y_train, ds.x_val, ds.y_val, units=gru,
                            on_epoch=on_epoch, **kw)
        else:
            res = train_mlp(ds.x_train, ds.y_train, ds.x_val, ds.y_val, on_epoch=on_epoch,
                            skip=skip, **kw)
    free, y_free = None, None
    if kind == "narx":
        pred, true = free_run(res.model, ds, *lags, gru_window=window)
        free = np.sqrt(((pred - true) ** 2).mean(axis=(0, 1)))
        y_free = pred[0]

    step(3, total, "plotting predicted vs true on validation data")
    png_part = out / f".{stem}.png.part"
    y_pred = res.model.predict(ds.x_val, verbose=0, batch_size=4096)
    try:
        plot_validation(png_part, ds, y_pred, f"{stem}: {arch}, validation RMSE " + ", ".join(
            f"{v:.3g} {u}" for v, (_, u) in zip(res.val_rmse, ds.output_names)), y_free=y_free)

        step(4, total, f"exporting .keras, .tflite (float, int8), .onnx and metadata to {out}")
        rep = representative_subset(ds.x_train, 200, seed=o.seed, y=ds.y_train)
        meta = {
            **job.describe,
            "kind": kind, "model": stem, "architecture": arch,
            "hidden": list(hidden), "activation": o.activation, "gru_units": gru,
            "linear_skip": skip,
            "lags": {"ny": lags[0], "nu": lags[1]} if kind == "narx" else None,
            "gru_window": window,
            "input_layout": ("window of [y, u] rows, oldest first" if gru else
                             "[y[k..k-ny+1], u[k..k-nu+1]]" if kind == "narx" else
                             "[x[k], u[k]]" if kind == "dyn" else "u"),
            "model_inputs": _feature_limits(job.limits, ds.input_names),
            "model_outputs": _feature_limits(job.limits, ds.output_names),
            "normalisation": "folded into the model: raw physical units in and out",
            "folded_scaling": {"input_mean": res.x_norm.mean.tolist(),
                               "input_std": res.x_norm.std.tolist(),
                               "output_mean": res.y_norm.mean.tolist(),
                               "output_std": res.y_norm.std.tolist()},
            "training": {"samples": job.samples, "n_train": int(len(ds.x_train)),
                         "n_val": int(len(ds.x_val)), "epochs_run": res.epochs,
                         "best_epoch": res.best_epoch, "max_epochs": epochs,
                         "seed": o.seed, "seconds": round(res.seconds, 2),
                         "split": ds.meta.get("split", "separate validation trajectories")},
            "validation": {"rmse": [float(v) for v in res.val_rmse],
                           "max_abs": [float(v) for v in res.val_max],
                           "free_run_rmse": None if free is None else [float(v) for v in free]},
        }
        files = export_all(res.model, out, stem, meta, rep,
                           extra_files={f"{stem}.png": png_part})
    finally:
        png_part.unlink(missing_ok=True)
    q = min(300, len(ds.x_val))
    y_int8 = run_tflite(out / f"{stem}_int8.tflite", ds.x_val[:q])
    int8_rmse = np.sqrt(((y_int8 - ds.y_val[:q]) ** 2).mean(axis=0))
    params = int(sum(np.prod(w.shape) for w in res.model.get_weights()))
    return TrainOutcome(job.name, kind, bool(gru), arch, params, ds, res, free, int8_rmse, files)
