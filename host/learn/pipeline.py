"""`nnmpc train` as a function: simulate a plant, train a net on it, plot and export it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from ..plants import get_plant
from ..progress import Progress, step
from .datasets import Dataset, make_dataset
from .export import export_all, representative_subset, run_tflite
from .plots import plot_validation
from .train import ACTIVATIONS, TrainResult, free_run, train_gru, train_mlp


@dataclass
class TrainOptions:
    """What to train; ``None`` takes the plant's default net (``nnmpc plants``)."""

    plant: str
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


def _feature_limits(plant, names: list[tuple[str, str]]) -> list[dict]:
    by_name = {}
    for s in (*plant.inputs, *plant.outputs, *plant.states):
        by_name.setdefault(s.name, s)
    out = []
    for name, unit in names:
        base = name.split("[")[0]
        s = by_name.get(base)
        out.append({"name": name, "unit": unit, "low": s.low if s else None,
                    "high": s.high if s else None})
    return out


def train_plant(o: TrainOptions) -> TrainOutcome:
    """Simulate ``o.plant``, train the net, plot the validation data and export every format
    to ``o.out``; progress on stdout."""
    if o.activation not in ACTIVATIONS:
        raise NnmpcError(f"unknown activation '{o.activation}' "
                         f"(known: {', '.join(ACTIVATIONS)})")
    for opt, val, ok in (("--patience", o.patience, o.patience >= 1),
                         ("--batch-size", o.batch_size, o.batch_size >= 1),
                         ("--lr", o.lr, o.lr > 0),
                         ("--gru", o.gru, o.gru is None or o.gru >= 1)):
        if not ok:
            raise NnmpcError(f"{opt} {val} is out of range (must be positive)")
    plant = get_plant(o.plant)
    spec = plant.default_net
    kind = o.kind or spec.kind
    hidden = tuple(o.hidden) if o.hidden is not None else spec.hidden
    lags = tuple(o.lags) if o.lags is not None else spec.lags
    samples = spec.samples if o.samples is None else o.samples
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
    stem = f"{plant.name}_{kind}" + ("_gru" if gru else "")
    out = Path(o.out)
    if out.exists() and not out.is_dir():
        raise NnmpcError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NnmpcError(f"--out {out}: cannot create the folder: {e.strerror}") from None
    total = 4

    step(1, total, f"simulating {plant.name}: {plant.description} "
                   f"({samples} samples, {kind} data, seed {o.seed})")
    ds = make_dataset(plant, kind, samples, seed=o.seed, lags=lags, gru_window=window)
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
            **plant.describe(),
            "kind": kind, "model": stem, "architecture": arch,
            "hidden": list(hidden), "activation": o.activation, "gru_units": gru,
            "linear_skip": skip,
            "lags": {"ny": lags[0], "nu": lags[1]} if kind == "narx" else None,
            "gru_window": window,
            "input_layout": ("window of [y, u] rows, oldest first" if gru else
                             "[y[k..k-ny+1], u[k..k-nu+1]]" if kind == "narx" else
                             "[x[k], u[k]]" if kind == "dyn" else "u"),
            "model_inputs": _feature_limits(plant, ds.input_names),
            "model_outputs": _feature_limits(plant, ds.output_names),
            "normalisation": "folded into the model: raw physical units in and out",
            "folded_scaling": {"input_mean": res.x_norm.mean.tolist(),
                               "input_std": res.x_norm.std.tolist(),
                               "output_mean": res.y_norm.mean.tolist(),
                               "output_std": res.y_norm.std.tolist()},
            "training": {"samples": samples, "n_train": int(len(ds.x_train)),
                         "n_val": int(len(ds.x_val)), "epochs_run": res.epochs,
                         "best_epoch": res.best_epoch, "max_epochs": epochs,
                         "seed": o.seed, "seconds": round(res.seconds, 2)},
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
    return TrainOutcome(plant.name, kind, bool(gru), arch, params, ds, res, free, int8_rmse, files)
