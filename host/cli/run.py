"""``nnmpc run`` (closed loop on a board) and ``nnmpc monitor`` (telemetry to CSV)."""

from __future__ import annotations

import json
from pathlib import Path


def cmd_run(args) -> int:
    from ..loop import run_on_board

    log_path = Path(args.log) if args.log else Path(args.work) / f"{args.plant}_{args.controller}.csv"
    r = run_on_board(args.plant, args.controller, args.reference, model=args.model,
                     board_name=args.board, work=Path(args.work), log_path=log_path,
                     sim=args.sim, seed=args.seed, duration=args.duration,
                     noise=not args.no_noise, net_kind=args.net)
    s = r.summary
    u = f" {s['units']}" if s.get("units") else ""
    print(f"{args.plant} / {args.controller} / {args.reference}: {s['periods']} periods, "
          f"tracking RMS {s['tracking_rms']:.4g}{u} (noise-free output)"
          + (f", path error RMS {s['path_error_rms']:.4g}{u} max {s['path_error_max']:.4g}{u}"
             if "path_error_rms" in s else ""))
    if s.get("start"):
        print(f"  start: {s['start']}")
    print(f"  iterations mean {s['iterations_mean']} max {s['iterations_max']}, status "
          f"{s['status_counts']}, lost frames {s['lost_frames']}")
    print(f"  firmware {s['image_flash']} B flash, {s['image_ram']} B RAM")
    print(f"  wrote {r.csv} and {r.png}")
    if args.json:
        Path(args.json).write_text(json.dumps(s, indent=2) + "\n")
    return 0


def cmd_monitor(args) -> int:
    from ..loop.monitor import main_monitor
    from ..link.ports import resolve_port

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
    r.add_argument("--plant", default="msd", help="plant (see `nnmpc plants`; default: msd)")
    r.add_argument("--model", default=None, metavar="M",
                   help="net file (.keras/.h5/.tflite/.onnx) or compiled folder; default: "
                        "train the plant's default net (cached in --work)")
    r.add_argument("--net", choices=("fk", "narx"), default=None,
                   help="kind of default net to train when --model is omitted: fk "
                        "(quasi-static inversion) or narx (dynamics, receding-horizon MPC); "
                        "default: the plant's (msd: narx, tendon: fk)")
    r.add_argument("--controller", choices=("nr", "pid", "fd"), default="nr",
                   help="nr: Newton MPC (exact Jacobian); pid: tuned PID; fd: one "
                        "finite-difference Newton step per period (default: nr)")
    r.add_argument("--reference", default="step", metavar="step|sine|FILE.csv",
                   help="reference: step, sine, or a CSV with a column per tracked output")
    r.add_argument("--log", default=None, metavar="run.csv", help="telemetry CSV (PNG beside)")
    r.add_argument("--sim", choices=("host", "device"), default="host",
                   help="where the plant runs (default: host, hardware-in-the-loop)")
    r.add_argument("--duration", type=float, default=None, help="seconds (default: per plant)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--no-noise", action="store_true", help="no sensor noise")
    r.add_argument("--work", default="build/run", help="work folder (default: build/run)")
    r.add_argument("--json", default=None, help="also write the summary as JSON")
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
