"""`nnmpc train` (simulate a plant, train a net, export it) and the extended `nnmpc plants`."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def _lag(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        v = float(text)
    except ValueError:
        raise NnmpcError(f"--input-lag '{text}': seconds (e.g. 0.1) or auto") from None
    if not 0 <= v <= 10:
        raise NnmpcError(f"--input-lag {v:g}: outside [0, 10] s")
    return v


def cmd_train(args) -> int:
    from ..learn.pipeline import TrainOptions, train_plant

    opts = TrainOptions(
        plant=args.plant, out=Path(args.out), kind=args.kind,
        hidden=_ints(args.hidden, "--hidden") if args.hidden is not None else None,
        activation=args.activation, gru=args.gru, skip=args.skip,
        lags=_ints(args.lags, "--lags", 2) if args.lags is not None else None,
        epochs=args.epochs, patience=args.patience, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, samples=args.samples, save_data=args.save_data,
        data=Path(args.data) if args.data else None,
        inputs=tuple(args.inputs or ("u_*",)), outputs=tuple(args.outputs or ("y_*",)),
        input_lag=_lag(args.input_lag))
    if opts.data is None and (args.inputs or args.outputs):
        raise NnmpcError("--inputs and --outputs pick columns of a log: they need --data")
    r = train_plant(opts)
    print_summary(r)
    return 0


def print_summary(r) -> None:
    """The table `nnmpc train` ends with."""
    res, ds, free, int8_rmse = r.result, r.dataset, r.free_run_rmse, r.int8_rmse
    plant, kind, gru, arch, params, files = r.plant, r.kind, r.gru, r.architecture, r.params, r.files
    print()
    print(f"Summary: {plant} {kind}" + (" (GRU)" if gru else "")
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
        "train", help="simulate a plant (or read a log), train a net on it and export it",
        description="Simulate a plant with excitation inside its actuator limits (or read a "
                    "logged time series with --data), train a "
                    "forward-kinematics (fk), one-step dynamics (dyn) or NARX net with Keras, "
                    "and write OUT/PLANT_KIND.keras, .tflite, _int8.tflite, .onnx, .json and a "
                    "validation plot .png. The exported nets take and return raw physical units. "
                    "Options left out take the plant's default net (see `nnmpc plants`).")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--plant", choices=sorted(PLANTS), help="plant to simulate")
    src.add_argument("--data", metavar="LOG", help="train from a collect log (.csv or .mcap, see "
                     "docs/TRAINING.md) instead of a simulation; files are named after the "
                     "plant its metadata names, else after the log's file name")
    t.add_argument("--inputs", action="append", metavar="COLS",
                   help="with --data: the input columns, names or globs, comma-separated or "
                        "repeated (default: u_*)")
    t.add_argument("--outputs", action="append", metavar="COLS",
                   help="with --data: the output columns (default: y_*)")
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
    t.add_argument("--input-lag", metavar="SECONDS|auto", default="auto",
                   help="--data with --kind fk: the actuators' first-order time constant; the "
                        "net learns y from the inputs through it (the quasi-static map). auto "
                        "(default) identifies it from the log; 0 pairs y[k] with u[k] as is")
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
