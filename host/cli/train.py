"""`nnmpc train` (simulate a plant, train a net, export it) and the extended `nnmpc plants`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from ..errors import NnmpcError


def _ints(text: str, what: str, count: int | None = None) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip() != "")
    except ValueError:
        raise NnmpcError(f"{what} '{text}' is not a comma-separated list of integers") from None
    if count is not None and len(vals) != count:
        raise NnmpcError(f"{what} '{text}' needs {count} comma-separated integers")
    if any(v < 0 for v in vals):
        raise NnmpcError(f"{what} '{text}' has a negative value")
    return vals


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


def cmd_train(args) -> int:
    from ..learn.datasets import make_dataset
    from ..learn.export import export_all, representative_subset, run_tflite
    from ..plants import get_plant
    from ..progress import Progress, step
    from ..learn.train import ACTIVATIONS, free_run, train_gru, train_mlp

    if args.activation not in ACTIVATIONS:
        raise NnmpcError(f"unknown activation '{args.activation}' "
                         f"(known: {', '.join(ACTIVATIONS)})")
    for opt, val, ok in (("--patience", args.patience, args.patience >= 1),
                         ("--batch-size", args.batch_size, args.batch_size >= 1),
                         ("--lr", args.lr, args.lr > 0),
                         ("--gru", args.gru, args.gru is None or args.gru >= 1)):
        if not ok:
            raise NnmpcError(f"{opt} {val} is out of range (must be positive)")
    plant = get_plant(args.plant)
    spec = plant.default_net
    kind = args.kind or spec.kind
    hidden = _ints(args.hidden, "--hidden") if args.hidden is not None else spec.hidden
    lags = _ints(args.lags, "--lags", 2) if args.lags is not None else spec.lags
    samples = spec.samples if args.samples is None else args.samples
    epochs = spec.epochs if args.epochs is None else args.epochs
    gru = args.gru
    if gru is not None and kind != "narx":
        raise NnmpcError("--gru needs --kind narx (the GRU reads a window of past outputs "
                         "and inputs)")
    if args.lags is not None and kind != "narx":
        raise NnmpcError("--lags applies to --kind narx only")
    if gru is not None and args.skip:
        raise NnmpcError("--skip adds a linear input-to-output path to an MLP; it does not "
                         "apply with --gru")
    skip = (kind in ("dyn", "narx") and not gru) if args.skip is None else args.skip
    window = max(lags) if gru else None
    stem = f"{plant.name}_{kind}" + ("_gru" if gru else "")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NnmpcError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NnmpcError(f"--out {out}: cannot create the folder: {e.strerror}") from None
    total = 4

    step(1, total, f"simulating {plant.name}: {plant.description} "
                   f"({samples} samples, {kind} data, seed {args.seed})")
    ds = make_dataset(plant, kind, samples, seed=args.seed, lags=lags, gru_window=window)
    n_in = ds.x_train.shape[-1]
    n_out = ds.y_train.shape[-1]
    arch = _arch(n_in, n_out, hidden, args.activation, gru, window, skip)
    if args.save_data:
        ds.save(out / f"{stem}_data.npz")

    step(2, total, f"training {arch} (Keras, up to {epochs} epochs, early stopping)")
    kw = dict(hidden=hidden, activation=args.activation, epochs=epochs, seed=args.seed,
              patience=args.patience, batch_size=args.batch_size, lr=args.lr, name=stem)
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
        rep = representative_subset(ds.x_train, 200, seed=args.seed, y=ds.y_train)
        meta = {
            **plant.describe(),
            "kind": kind, "model": stem, "architecture": arch,
            "hidden": list(hidden), "activation": args.activation, "gru_units": gru,
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
                         "seed": args.seed, "seconds": round(res.seconds, 2)},
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
    print()
    print(f"Summary: {plant.name} {kind}" + (" (GRU)" if gru else "")
          + f", {arch}, {params} parameters")
    print(f"  data     {len(ds.x_train)} train / {len(ds.x_val)} validation samples")
    print(f"  epochs   {res.epochs} run, best {res.best_epoch} ({res.seconds:.1f} s)")
    w = max(8, *(len(nm) + 2 for nm, _ in ds.output_names))
    hdr = f"  {'output':<{w}}{'unit':<7}{'val RMSE':>10}{'val max':>10}{'int8 RMSE':>11}"
    if free is not None:
        hdr += f"{'free-run RMSE':>15}"
    print(hdr)
    for j, (name, unit) in enumerate(ds.output_names):
        row = (f"  {name:<{w}}{unit:<7}{res.val_rmse[j]:>10.4g}{res.val_max[j]:>10.4g}"
               f"{int8_rmse[j]:>11.4g}")
        if free is not None:
            row += f"{free[j]:>15.4g}"
        print(row)
    print("  files    " + "\n           ".join(str(f) for f in files))
    return 0


def cmd_plants(args) -> int:
    from ..plants import PLANTS

    for name, cls in sorted(PLANTS.items()):
        p = cls()
        spec = p.default_net
        print(f"{name}: {cls.description}")
        print(f"    sample period {p.dt * 1e3:g} ms; default net: {spec.kind}, hidden "
              f"{','.join(map(str, spec.hidden))} {spec.activation}"
              + (f", lags {spec.lags[0]},{spec.lags[1]}" if spec.kind == "narx" else ""))
        for kind, sigs in (("in ", p.inputs), ("out", p.outputs), ("state", p.states)):
            noise = dict(zip((s.name for s in p.outputs), p.noise_std)) if kind == "out" else {}
            for s in sigs:
                extra = f"  (noise sd {noise[s.name]:g})" if s.name in noise else ""
                print(f"    {kind:<5} {s.name:<9} [{s.low:g}, {s.high:g}] {s.unit}{extra}")
    return 0


def register(subparsers) -> None:
    """Add `train` and extend `plants` (called from ``build_parser``)."""
    from ..plants import PLANTS

    t = subparsers.add_parser(
        "train", help="simulate a plant, train a net on it and export it",
        description="Simulate a plant with excitation inside its actuator limits, train a "
                    "forward-kinematics (fk), one-step dynamics (dyn) or NARX net with Keras, "
                    "and write OUT/PLANT_KIND.keras, .tflite, _int8.tflite, .onnx, .json and a "
                    "validation plot .png. The exported nets take and return raw physical units. "
                    "Options left out take the plant's default net (see `nnmpc plants`).")
    t.add_argument("--plant", required=True, choices=sorted(PLANTS), help="plant to simulate")
    t.add_argument("--kind", choices=("fk", "dyn", "narx"),
                   help="fk: y = f(u); dyn: x[k+1] = g(x[k], u[k]); narx: y[k+1] from lagged "
                        "y and u")
    t.add_argument("--hidden", metavar="N,N,...", help="hidden Dense sizes, e.g. 32,32")
    t.add_argument("--activation", default="tanh", help="hidden activation (default: tanh)")
    t.add_argument("--gru", type=int, metavar="N",
                   help="put a GRU with N units first (narx only; window = max(lags))")
    t.add_argument("--skip", action=argparse.BooleanOptionalAction, default=None,
                   help="add a linear input-to-output path beside the MLP (y = W x + MLP(x)); "
                        "default: on for dyn and narx, off for fk")
    t.add_argument("--lags", metavar="NY,NU", help="NARX output and input lags, e.g. 2,2")
    t.add_argument("--epochs", type=int, help="maximum epochs")
    t.add_argument("--patience", type=int, default=20, help="early-stopping patience in epochs (default: 20)")
    t.add_argument("--batch-size", type=int, default=64, help="minibatch size (default: 64)")
    t.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: 0.003)")
    t.add_argument("--seed", type=int, default=0, help="seed for data, split and weights (default: 0)")
    t.add_argument("--samples", type=int, help="simulated samples")
    t.add_argument("--out", default="models", help="output folder (default: models)")
    t.add_argument("--save-data", action="store_true",
                   help="also write the data set as OUT/PLANT_KIND_data.npz")
    t.set_defaults(func=cmd_train)

    if "plants" in subparsers.choices:
        subparsers.choices["plants"].set_defaults(func=cmd_plants)
    else:
        pl = subparsers.add_parser("plants", help="list the simulated plants")
        pl.set_defaults(func=cmd_plants)
