"""`nnmpc collect`: an excitation experiment on a board, logged for `nnmpc train --data`."""

from __future__ import annotations

from pathlib import Path

from ..errors import NnmpcError


def _signals(args):
    """Names, units and limits of the inputs and outputs: the plant's, else the board's."""
    from ..build.boards import load_board
    from ..loop.collect import Signal
    from ..plants import get_plant

    if args.plant:
        pl = get_plant(args.plant)
        return ([Signal(s.name, s.unit, s.low, s.high) for s in pl.inputs],
                [Signal(s.name, s.unit, s.low, s.high) for s in pl.outputs], pl.dt, pl)
    board = load_board(args.board)
    if not board.sensors or not board.actuators:
        raise NnmpcError(f"board '{board.name}' declares no [[sensor]]/[[actuator]] channels "
                         f"({board.path}); add them, or name a simulated plant with --plant")
    rate = float(args.rate_hz or board.timer.get("rate_hz", 100.0))
    return ([Signal(c.name, c.unit, min(c.units), max(c.units)) for c in board.actuators],
            [Signal(c.name, c.unit, min(c.units), max(c.units)) for c in board.sensors],
            1.0 / rate, None)


def _floats(text, what, n):
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise NnmpcError(f"{what} '{text}': not a comma-separated list of numbers") from None
    if len(vals) != n:
        raise NnmpcError(f"{what} '{text}': needs {n} values, one per input")
    return vals


def cmd_collect(args) -> int:
    from ..build.boards import load_board
    from ..link.client import DeviceClient
    from ..loop.collect import Excitation, collect

    inputs, outputs, dt, plant = _signals(args)
    ex = Excitation(signal=args.signal, duration_s=args.duration, amplitude=args.amplitude,
                    f_lo=args.f_lo, f_hi=args.f_hi, hold_s=args.hold, seed=args.seed)
    ex.check(dt)
    u_lo = _floats(args.u_lo, "--u-lo", len(inputs))
    u_hi = _floats(args.u_hi, "--u-hi", len(inputs))
    lim_lo, lim_hi = [s.low for s in inputs], [s.high for s in inputs]
    for name, vals in (("--u-lo", u_lo), ("--u-hi", u_hi)):
        for v, lo, hi, s in zip(vals or [], lim_lo, lim_hi, inputs):
            if not lo <= v <= hi:
                raise NnmpcError(f"{name}: {v:g} for {s.name} is outside its limits "
                                 f"[{lo:g}, {hi:g}] {s.unit}")
    stem = plant.name if plant else args.board
    out = Path(args.out or f"build/collect/{stem}_{args.signal}.csv")
    meta = {"plant": plant.name} if plant else {}
    board = load_board(args.board)

    def report(r):
        state = "interrupted: " if r.interrupted else ""
        print(f"{state}{r.periods} periods ({r.periods * dt:.1f} s) in {r.seconds:.1f} s, "
              f"{r.lost} lost -> {r.path}")
        if args.log:
            from ..learn.logs import read_log
            from ..loop.logs import write_mcap
            write_mcap(read_log(r.path), Path(args.log))
            print(f"  MCAP: {args.log}")

    if args.port:
        from ..link.ports import resolve_port
        from ..loop.monitor import open_port
        url = resolve_port(args.port, board.name)
        port = open_port(url, board.baud, timeout=0.5)
        try:
            c = DeviceClient(port, timeout=5.0)
            report(collect(c, inputs, outputs, dt, ex, out, u_lo=u_lo, u_hi=u_hi,
                           extra_meta=meta))
        finally:
            port.close()
        return 0
    if not board.emulated or plant is None:
        raise NnmpcError("without --port, collect runs the emulated board's stand-in rig: "
                         "--board qemu-m4f --plant P (or give the --port of a board)")
    from ..link.rig import boot_rig
    with boot_rig(board, plant, Path(args.work), seed=args.seed,
                  rig_log=out.with_suffix(".rig.csv")) as (c, rig):
        r = collect(c, inputs, outputs, dt, ex, out, u_lo=u_lo, u_hi=u_hi, extra_meta=meta)
        c.exit()
    report(r)
    return 0


def register(sub) -> None:
    from ..loop.collect import SIGNALS
    from ..plants import PLANTS

    c = sub.add_parser(
        "collect", help="record an excitation experiment on a board (data for train --data)",
        description="The board drives its actuators open loop with steps, a chirp, a multisine "
                    "or a PRBS inside the input limits at the control rate, samples its sensors "
                    "every period, and the host logs each period as a CSV row: t, u_<input>..., "
                    "y_<output>... in physical units. With --board qemu-m4f --plant P it runs on "
                    "the emulated board's stand-in rig (plant P behind its second UART); with "
                    "--port URL on a board flashed with on-board sensing. Ctrl-C keeps a valid "
                    "CSV of the periods done.")
    c.add_argument("--board", default="qemu-m4f", help="board (default: qemu-m4f)")
    c.add_argument("--plant", choices=sorted(PLANTS),
                   help="the simulated plant of the stand-in rig; also names the signals")
    c.add_argument("--port", help="a board already running, at this port or pyserial URL "
                                  "(e.g. /dev/ttyACM0, socket://127.0.0.1:4321, auto)")
    c.add_argument("--signal", choices=list(SIGNALS), default="multisine",
                   help="excitation (default: multisine)")
    c.add_argument("--duration", type=float, default=60.0, help="seconds (default: 60)")
    c.add_argument("--amplitude", type=float, default=0.8,
                   help="fraction of each input's half range (default: 0.8)")
    c.add_argument("--f-lo", type=float, default=0.05, help="lowest frequency, Hz (default: 0.05)")
    c.add_argument("--f-hi", type=float, default=2.0, help="highest frequency, Hz (default: 2)")
    c.add_argument("--hold", type=float, default=0.5,
                   help="steps, prbs: seconds per level (default: 0.5)")
    c.add_argument("--u-lo", metavar="V,V,...", help="input lower limits (default: the board's "
                                                     "or plant's)")
    c.add_argument("--u-hi", metavar="V,V,...", help="input upper limits")
    c.add_argument("--rate-hz", type=float, help="control rate of a real board (default: the "
                                                 "board file's [timer] rate_hz, else 100)")
    c.add_argument("--seed", type=int, default=0, help="excitation and sensor-noise seed")
    c.add_argument("--out", metavar="LOG.csv", help="CSV log (default: build/collect/...)")
    c.add_argument("--log", metavar="FILE.mcap", help="also write the log as MCAP")
    c.add_argument("--work", default="build/collect", help="work folder (firmware)")
    c.set_defaults(func=cmd_collect)
