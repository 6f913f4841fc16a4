"""``nnmpc run`` (closed loop on a board) and ``nnmpc monitor`` (telemetry to CSV)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import NnmpcError


def _gains_text(g: dict, sep: str) -> str:
    """The PID's gains, preview and lead, as "kp<sep>16.9, ..." (those ``g`` has)."""
    return ", ".join(f"{k}{sep}{g[k]:.4g}" if isinstance(g[k], float) else f"{k}{sep}{g[k]}"
                     for k in ("kp", "ki", "kd", "kff", "kdff", "preview", "lead") if k in g)


def _print_summary(s: dict, name: str, reference: str, scored: str = "") -> None:
    u = f" {s['units']}" if s.get("units") else ""
    print(f"{name} / {s['controller']} / {reference}: {s['periods']} periods, "
          f"tracking RMS {s['tracking_rms']:.4g}{u}{scored}"
          + (f", path error RMS {s['path_error_rms']:.4g}{u} max {s['path_error_max']:.4g}{u}"
             if "path_error_rms" in s else ""))
    if s.get("start"):
        print(f"  start: {s['start']}")
    if s.get("pid"):
        print("  PID gains (per period): " + _gains_text(s["pid"], " "))
    print(f"  iterations mean {s['iterations_mean']} max {s['iterations_max']}, status "
          f"{s['status_counts']}, lost frames {s['lost_frames']}")
    if s.get("brief_periods"):
        print(f"  noisy link: {s['brief_periods']} periods as SENSOR_BRIEF / TELEMETRY_BRIEF "
              f"(status and u only), {s.get('resends', 0)} frames sent again")


def _truth_from(path: Path, outputs: list[str]):
    """k -> noise-free outputs of the last run in a stand-in rig's log (nnmpc flash --plant)."""
    import csv

    import numpy as np
    cache: dict[int, np.ndarray] = {}

    def load():
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise NnmpcError(f"--truth {path}: no rows")
        last = rows[-1]["run"]
        for r in rows:
            if r["run"] == last:
                cache[int(r["k"])] = np.array([float(r[f"ytrue_{n}"]) for n in outputs])

    def truth(k: int):
        if not cache:
            load()
        if k not in cache:
            raise NnmpcError(f"--truth {path}: no row for period {k} of the last run")
        return cache[k]
    return truth


def _run_at_port(args) -> int:
    from ..link.client import DeviceClient
    from ..link.ports import resolve_port
    from ..loop import plot, reference, start_input, summary, write_csv
    from ..loop.atport import net_from_hello, run_board_sensors, run_hil
    from ..loop.controller import ControllerSettings
    from ..loop.monitor import open_port
    from ..loop.pid import gains_for_run
    from ..loop.references import reference_csv
    from ..loop.settings import controller_settings
    from ..loop.setups import default_u_init
    from ..plants import get_plant

    if args.plant is None and args.config is None:
        raise NnmpcError("--port needs --config CTL.toml (the board samples its own sensors), or "
                         "--plant P (the plant simulated here, lock-step over the port)")
    url = resolve_port(args.port, args.board if args.board != "qemu-m4f" else None)
    port = open_port(url, timeout=0.5)
    try:
        client = DeviceClient(port, timeout=5.0)
        hello = client.hello(timeout=15.0)
        cfg = ControllerSettings.load(Path(args.config)) if args.config else None
        if args.plant:  # hardware-in-the-loop against a board started elsewhere
            plant = get_plant(args.plant)
            net = net_from_hello(plant, hello)
            refs = reference(plant, args.reference, args.duration)
            cs = cfg or controller_settings(plant, net, "nr")
            u0 = start_input(plant, refs[0], default_u_init(plant, net.kind), cs.tracked_index)
            if cfg is None and args.controller != "nr":
                pid = gains_for_run(plant, args.controller, refs, u0, Path(args.work) / "pid")
                cs = controller_settings(plant, net, args.controller, pid=pid)
            log = run_hil(client, plant, cs, refs, u0, seed=args.seed, noise=not args.no_noise)
            name = plant.name
        else:
            cs = cfg
            if args.reference in ("step", "sine"):
                if not cs.plant:
                    raise NnmpcError(f"--reference {args.reference}: the settings name no plant "
                                     "setup; give a CSV reference with a t column")
                refs = reference(get_plant(cs.plant), args.reference, args.duration)
            else:
                refs = reference_csv(Path(args.reference), cs.outputs, cs.tracked, cs.dt,
                                     args.duration)
            truth = _truth_from(Path(args.truth), cs.outputs) if args.truth else None
            log = run_board_sensors(client, cs, refs, settle_s=args.settle, truth=truth,
                                    name=cs.plant or hello.board)
            name = cs.plant or hello.board
        log.extra["stats"] = client.stats()
    finally:
        port.close()
    s = summary(log)
    s["device_periods"] = log.extra["stats"]["k"]     # the device's count, to compare with ours
    s["resends"] = log.extra.get("resends", 0)
    s["brief_periods"] = log.extra.get("brief", 0)   # answered by TELEMETRY_BRIEF (noisy link)
    stem = f"{name}_{s['controller']}"
    log_path = Path(args.log) if args.log else Path(args.work) / f"{stem}.csv"
    csv_path = write_csv(log, log_path)
    png = plot(log, log_path.with_suffix(".png"))
    _print_summary(s, name, args.reference)
    print(f"  wrote {csv_path} and {png}")
    if args.mcap:
        from ..loop.logs import write_mcap
        write_mcap(log, Path(args.mcap))
        print(f"  MCAP: {args.mcap}")
    if args.json:
        Path(args.json).write_text(json.dumps(s, indent=2) + "\n")
    return 0


def cmd_run(args) -> int:
    from ..loop import run_on_board

    if args.write_config:
        return _write_config(args)
    if args.port:
        return _run_at_port(args)
    args.plant = args.plant or "msd"
    config = None
    if args.config:
        from ..loop.controller import ControllerSettings
        config = ControllerSettings.load(Path(args.config))
    log_path = Path(args.log) if args.log else Path(args.work) / f"{args.plant}_{args.controller}.csv"
    r = run_on_board(args.plant, config.controller if config else args.controller,
                     args.reference, model=args.model,
                     board_name=args.board, work=Path(args.work), log_path=log_path,
                     sim=args.sim, seed=args.seed, duration=args.duration,
                     noise=not args.no_noise, net_kind=args.net, config=config,
                     estimator=args.estimator)
    s = r.summary
    _print_summary(s, args.plant, args.reference, " (noise-free output)")
    print(f"  firmware {s['image_flash']} B flash, {s['image_ram']} B RAM")
    print(f"  wrote {r.csv} and {r.png}")
    if args.json:
        Path(args.json).write_text(json.dumps(s, indent=2) + "\n")
    return 0


def _write_config(args) -> int:
    from ..loop import default_u_init, prepare_model, reference, setup_for, start_input
    from ..loop.pid import gains_for_run
    from ..loop.settings import controller_settings
    from ..plants import get_plant

    plant = get_plant(args.plant or "msd")
    net = prepare_model(plant, args.model, Path(args.work), seed=args.seed, kind=args.net)
    pid = None
    if args.controller.startswith("pid"):
        # The gains for a run from rest at the reference's first point, as `nnmpc run` tunes
        # them (pid on --reference, pid-preview and pid-ff on the tuning reference).
        refs = reference(plant, args.reference, args.duration)
        u0 = start_input(plant, refs[0], default_u_init(plant, net.kind),
                         setup_for(plant).tracked)
        pid = gains_for_run(plant, args.controller, refs, u0, Path(args.work) / "pid")
    cs = controller_settings(plant, net, args.controller, pid=pid, estimator=args.estimator,
                             u_init=None if pid is None else pid["u_bias"])
    path = cs.save(Path(args.write_config))
    print(f"wrote {path}: {plant.name} {cs.net} net, {cs.controller}, horizon {cs.horizon}, "
          f"{cs.rate_hz:g} Hz" + ("" if pid is None else ", [pid] " + _gains_text(cs.pid, " = ")))
    return 0


def cmd_monitor(args) -> int:
    from ..link.ports import resolve_port
    from ..loop.monitor import main_monitor

    port = resolve_port(args.port, args.board)
    st = main_monitor(port, Path(args.out) if args.out else None, args.baud,
                      args.duration, args.frames, args.clock_hz, plant=args.plant,
                      period_ms=args.period_ms, mcap=Path(args.log) if args.log else None)
    print(f"{st.frames} telemetry rows in {st.seconds:.1f} s, lost {st.lost}, "
          f"corrupt {st.corrupt}, overruns {st.overruns}")
    return 0


def register(sub) -> None:
    from ..plants import PLANTS

    r = sub.add_parser(
        "run", help="close the loop: plant vs controller on an (emulated) board",
        description="Build firmware with the net and run the closed loop. The plant runs on "
                    "the host and sends measurements every period (hardware-in-the-loop, "
                    "lock-step), or on the device (--sim device, mass-spring-damper only). "
                    "Writes telemetry CSV and a PNG plot beside it.")
    r.add_argument("--board", default="qemu-m4f", help="emulated board (default: qemu-m4f)")
    r.add_argument("--plant", default=None,
                   help="plant (see `nnmpc plants`; default: msd); with --port: simulate it here "
                        "in lock-step (hardware-in-the-loop)")
    r.add_argument("--model", default=None, metavar="M",
                   help="net file (.keras/.h5/.tflite/.onnx) or compiled folder; default: "
                        "train the plant's default net (cached in --work)")
    r.add_argument("--net", choices=("fk", "narx"), default=None,
                   help="kind of default net to train when --model is omitted: fk "
                        "(quasi-static inversion) or narx (dynamics, receding-horizon MPC); "
                        "default: the plant's (msd: narx, tendon: fk)")
    r.add_argument("--controller", choices=("nr", "pid", "pid-preview", "pid-ff", "fd"),
                   default="nr",
                   help="nr: Newton MPC (exact Jacobian); pid: PID tuned on the run's "
                        "reference; pid-preview: the PID given the reference P periods ahead; "
                        "pid-ff: that PID with feed-forward from the reference (kff, kdff, "
                        "lead L); pid-preview and pid-ff are tuned on the plant's tuning "
                        "reference, not the scored one (pid-ff: about 2 min, kept in "
                        "--work/pid); fd: one finite-difference Newton step per period "
                        "(default: nr). With --config, the file's controller and [pid] gains")
    r.add_argument("--reference", default="step", metavar="step|sine|FILE.csv",
                   help="reference: step, sine, or a CSV with a column per tracked output")
    r.add_argument("--log", default=None, metavar="run.csv", help="telemetry CSV (PNG beside)")
    r.add_argument("--sim", choices=("host", "device"), default="host",
                   help="where the plant runs (default: host, hardware-in-the-loop)")
    r.add_argument("--duration", type=float, default=None, help="seconds (default: per plant)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--estimator", action="store_true",
                   help="nr/fd on a narx net: start the rollouts from the on-device extended "
                        "Kalman filter's state (Q from the net's one-step error, R from the "
                        "sensor noise; docs/MPC.md); the emulated image is built with it. A "
                        "board at --port needs firmware built with NNMPC_ESTIMATOR=1")
    r.add_argument("--no-noise", action="store_true", help="no sensor noise")
    r.add_argument("--work", default="build/run", help="work folder (default: build/run)")
    r.add_argument("--json", default=None, help="also write the summary as JSON")
    r.add_argument("--port", metavar="URL",
                   help="run on a board already flashed and running at this port (pyserial "
                        "URL, /dev/ttyACM0, socket://127.0.0.1:PORT, auto): with --config it "
                        "samples its own sensors; with --plant the plant is simulated here, "
                        "lock-step over the port")
    r.add_argument("--config", metavar="CTL.toml",
                   help="controller settings file (weights, limits, horizon, moves, damping, "
                        "iteration cap, budget, rate), checked against the board's HELLO; "
                        "start one with --write-config")
    r.add_argument("--write-config", metavar="CTL.toml",
                   help="write the plant's default controller settings for its net to a file "
                        "and stop; with a PID --controller, the tuned gains too ([pid]: kp, "
                        "ki, kd, u_bias, mix; pid-ff also kff, kdff, y_bias, lead; preview)")
    r.add_argument("--settle", type=float, default=1.0,
                   help="--port with on-board sensing: seconds at the reference's first point "
                        "before the scored run (default: 1)")
    r.add_argument("--truth", metavar="RIG.csv",
                   help="--port on the stand-in rig: its log (nnmpc flash --plant ... "
                        "--rig-log), to score the noise-free outputs")
    r.add_argument("--mcap", metavar="FILE.mcap", help="also write the run as MCAP")
    r.set_defaults(func=cmd_run)

    m = sub.add_parser(
        "monitor", help="stream telemetry from a board to CSV with a live view",
        description="Listen on a serial port (any pyserial URL, e.g. /dev/ttyACM0 or "
                    "socket://127.0.0.1:PORT), write every TELEMETRY frame as a CSV row and "
                    "count lost and corrupt frames. Ctrl-C stops.")
    m.add_argument("--port", required=True,
                   help="serial port, pyserial URL, or 'auto' to find a known board by its "
                        "USB VID:PID")
    m.add_argument("--board", default=None,
                   help="with --port auto: only look for this board (default: any known board)")
    m.add_argument("--out", default=None, help="CSV file (default: no file, view only)")
    m.add_argument("--log", default=None, metavar="FILE.mcap",
                   help="also write an MCAP log (docs/LOGS.md)")
    m.add_argument("--plant", default=None, choices=sorted(PLANTS),
                   help="name the columns (and units, period) after this plant's signals "
                        "(default: y_0, y_1, ..., t in periods)")
    m.add_argument("--period-ms", type=float, default=None,
                   help="control period for t = k * period (default: the plant's)")
    m.add_argument("--baud", type=int, default=115200)
    m.add_argument("--duration", type=float, default=None, help="stop after seconds")
    m.add_argument("--frames", type=int, default=None, help="stop after this many rows")
    m.add_argument("--clock-hz", type=int, default=0,
                   help="the board's work-counter rate, to show work in us")
    m.set_defaults(func=cmd_monitor)
