"""``nnmpc sweep``: search nets and controller settings for a board's control period."""

from __future__ import annotations

from pathlib import Path

from ..errors import NnmpcError

#: Search-space flags: dimension -> help.
SPACE_FLAGS = {
    "kind": "net kinds, e.g. fk,narx (default: the plant's)",
    "depth": "hidden layers, e.g. 1,2",
    "width": "units per hidden layer, e.g. 8,16,32",
    "activation": "hidden activations, e.g. tanh,relu",
    "precision": "float32,int8 (int8: figures only, pruned: no Jacobian for the MPC)",
    "lags": "NARX lags (narx only; the GRU window with gru), e.g. 1,2",
    "gru": "GRU units before the Dense layers (narx only; 0: none), e.g. 0,8",
    "horizon": "prediction horizons N (receding-horizon kinds), e.g. 2,3,4",
    "moves": "free moves Nc <= N (receding-horizon kinds), e.g. 1,2",
}


def _columns(values) -> tuple[str, ...] | None:
    """--inputs/--outputs as `nnmpc train` takes them: comma-separated or repeated."""
    if not values:
        return None
    return tuple(c.strip() for v in values for c in v.split(",") if c.strip())


def cmd_sweep(args) -> int:
    from ..sweep.study import SweepOptions, main_sweep

    refs = None
    if args.references is not None:
        refs = tuple(r.strip() for r in args.references.split(",") if r.strip())
        if not refs:
            raise NnmpcError("--references: give step, sine or both (comma-separated)")
    train = {k: getattr(args, k) for k in ("epochs", "samples", "patience")
             if getattr(args, k) is not None}
    o = SweepOptions(
        plant=args.plant, data=Path(args.data) if args.data else None,
        inputs=_columns(args.inputs), outputs=_columns(args.outputs), board=args.board,
        rate_hz=args.rate_hz, trials=args.trials, out=Path(args.out), storage=args.storage,
        study=args.study, resume=args.resume,
        space_file=Path(args.space) if args.space else None,
        space_flags={k: getattr(args, k) for k in SPACE_FLAGS}, train=train, references=refs,
        duration=args.duration, count_periods=args.count_periods,
        budget_fraction=args.budget_fraction, seed=args.seed, tolerance=args.tolerance,
        baseline=not args.no_baseline)
    return main_sweep(o)


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "sweep", help="search nets and controller settings for the board's control period",
        description="Search net depth and width, activation, NARX lags, and the controller's "
                    "horizon and moves for the net that tracks best within the board's control "
                    "period, flash and RAM: every trial trains a net (fixed seed), compiles it, "
                    "checks its size on the board, counts the controller's worst period on the "
                    "Cortex-M4 instruction counter and closes the loop on the emulated board. "
                    "An Optuna study (multi-objective: tracking error, cycles, flash), in a "
                    "SQLite file in --out or shared by several workers through --storage. "
                    "See docs/SWEEP.md.")
    src = s.add_argument_group("what to sweep")
    src.add_argument("--plant", help="simulated plant (see `nnmpc plants`)")
    src.add_argument("--data", metavar="LOG.csv",
                     help="train every trial on a collect log (.csv or .mcap, as `nnmpc train "
                          "--data`); closed loop on the plant it names if its columns are that "
                          "plant's, else scored by replaying the held-out log through the host "
                          "build of the C (docs/SWEEP.md)")
    src.add_argument("--inputs", action="append", metavar="COLS",
                     help="with --data: the input columns, names or globs (default: u_*)")
    src.add_argument("--outputs", action="append", metavar="COLS",
                     help="with --data: the output columns (default: y_*)")
    src.add_argument("--board", help="board whose clock, flash and RAM budget apply "
                                     "(default: qemu-m4f)")
    src.add_argument("--rate-hz", type=float, help="control rate (default: 1000)")
    src.add_argument("--space", metavar="FILE.toml", help="search space (docs/SWEEP.md); the "
                                                          "flags below override its dimensions")
    for dim, text in SPACE_FLAGS.items():
        src.add_argument(f"--{dim}", metavar="A,B,...", help=text)
    tr = s.add_argument_group("training and measuring (the same for every trial)")
    tr.add_argument("--epochs", type=int, help="maximum epochs (default: the plant's net)")
    tr.add_argument("--samples", type=int, help="simulated samples (default: the plant's net)")
    tr.add_argument("--patience", type=int, help="early-stopping patience (default: 25)")
    tr.add_argument("--seed", type=int, help="seed of data, weights and sensor noise "
                                             "(default: 0)")
    tr.add_argument("--references", metavar="step,sine",
                    help="closed-loop references (default: step,sine)")
    tr.add_argument("--duration", type=float, metavar="S",
                    help="closed-loop seconds per reference (default: the plant's)")
    tr.add_argument("--count-periods", type=int, metavar="N",
                    help="periods counted on the instruction counter: the step reference "
                         "with its levels held N / levels periods each (default: 200)")
    tr.add_argument("--budget-fraction", type=float, metavar="F",
                    help="solver time budget as a fraction of the period (default: 0.9)")
    st = s.add_argument_group("the study")
    st.add_argument("--trials", type=int, default=20, help="trials this worker runs "
                                                           "(default: 20)")
    st.add_argument("--out", default="build/sweep", help="output folder (default: build/sweep)")
    st.add_argument("--storage", metavar="URL",
                    help="shared study storage, e.g. postgresql://USER@HOST/DB (default: "
                         "OUT/study.db, SQLite)")
    st.add_argument("--study", metavar="NAME", help="study name (default: sweep)")
    st.add_argument("--resume", action="store_true", help="continue the study in --out")
    st.add_argument("--tolerance", type=float, default=0.0, metavar="F",
                    help="nets within this relative tracking error of the best count as equal; "
                         "of those the smallest is chosen (default: 0)")
    st.add_argument("--no-baseline", action="store_true",
                    help="do not start a new study with the plant's default net")
    s.set_defaults(func=cmd_sweep)
