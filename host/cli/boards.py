"""CLI commands for boards: ``boards``, ``build``, ``flash`` and ``export-lib``.

``register(subparsers)`` adds them to the ``nnmpc`` parser (host/cli/__init__.py).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from ..errors import NnmpcError

DEFAULT_OUT = Path("build") / "boards"
QEMU_UPLOAD_PORT = "socket://127.0.0.1:4321"


def _project_dir(args) -> Path:
    return Path(args.out) if args.out else DEFAULT_OUT / args.board


def cmd_boards(args) -> int:
    from ..build.boards import format_board_table, list_boards, load_board

    boards = [load_board(n) for n in list_boards()]
    print(format_board_table(boards))
    if args.ports:
        from ..link.ports import comports, matching_ports

        hits = {p.device: b.name for p, b in matching_ports(None)}
        print("\nserial ports:")
        for p in comports():
            vid = "no USB ID" if p.vid is None else f"{p.vid:04X}:{p.pid or 0:04X}"
            print(f"  {p.device:<16} {vid:<10} {p.description:<30} {hits.get(p.device, '')}")
    return 0


def _core_check(board, model_dir: Path, work: Path) -> None:
    from ..build.sizecheck import build_core

    r = build_core(board, model_dir, work)
    print(f"core (bare-metal, arm-none-eabi-gcc {' '.join(board.machine_flags)}):")
    print(f"  {r.line()}")


def cmd_build(args) -> int:
    from ..build.boards import load_board
    from ..build.exportlib import prepare_model

    if args.board == "all":
        if not args.core_only:
            raise NnmpcError("--board all works with --core-only (one PlatformIO build per board)")
        from ..build.boards import list_boards

        work = (Path(args.out) if args.out else DEFAULT_OUT / "all").resolve()
        work.mkdir(parents=True, exist_ok=True)
        model_dir = prepare_model(args.model, work)
        from ..build.sizecheck import build_core

        print("core (bare-metal, arm-none-eabi-gcc -O2, each board's -mcpu/-mfpu/-mfloat-abi):")
        for name in list_boards():
            print(f"  {build_core(load_board(name), model_dir, work / 'core').line()}")
        return 0
    board = load_board(args.board)
    project_dir = _project_dir(args).resolve()
    fresh = not project_dir.exists()
    try:
        return _build_project(args, board, project_dir)
    except BaseException:
        if fresh:
            # A failed first build keeps the generated project (small: platformio.ini, src/,
            # lib/, to build elsewhere) but none of the half-made build or PlatformIO state
            # (the bulk: .pio/, .pio-core/).
            for bulk in (".pio", ".pio-core", "core"):
                shutil.rmtree(project_dir / bulk, ignore_errors=True)
        raise


def _build_project(args, board, project_dir: Path) -> int:
    from ..build import pio
    from ..build.exportlib import prepare_model

    project_dir.mkdir(parents=True, exist_ok=True)
    model_dir = prepare_model(args.model, project_dir)
    if not args.core_only:
        # Generate the project and fail fast if PlatformIO would have to download and cannot,
        # before spending time on anything else.
        project = pio.generate_project(board, model_dir, project_dir, core_dir=args.pio_core,
                                       period_us=args.period_us,
                                       local_sensors=args.local_sensors)
        print(f"PlatformIO project: {project.dir} (env {project.env}, "
              f"platform {project.platform})")
        pio.check_offline(project)
    _core_check(board, model_dir, project_dir / "core")
    if args.core_only:
        return 0
    t0 = time.monotonic()
    project, size = pio.build(board, model_dir, project_dir, capture=not args.verbose,
                              core_dir=args.pio_core, period_us=args.period_us,
                              local_sensors=args.local_sensors)
    print(f"firmware: {project.elf}  (pio run: {time.monotonic() - t0:.1f} s)")
    print(f"  flash {size.flash} B of {board.flash_bytes} B "
          f"({100 * size.flash / board.flash_bytes:.2f} %), RAM {size.ram} B of "
          f"{board.ram_bytes} B ({100 * size.ram / board.ram_bytes:.2f} %)")
    if board.emulated:
        print(f"run it: nnmpc flash --board {board.name}  (boots it in QEMU on "
              f"{QEMU_UPLOAD_PORT})")
    else:
        print(f"flash it: nnmpc flash --board {board.name} --port auto")
    return 0


def _tcp_port(url: str) -> int:
    import re
    m = re.fullmatch(r"(?:socket://)?(?:127\.0\.0\.1|localhost):(\d+)", url.strip())
    if not m or not 1 <= int(m.group(1)) <= 65535:
        raise NnmpcError(f"--port {url}: the emulated board serves a loopback port, e.g. "
                         "socket://127.0.0.1:4321")
    return int(m.group(1))


def _flash_emulated(args, board) -> int:
    """Boot the emulated board, serving its protocol UART at --port until the firmware exits:
    with --plant as the stand-in rig (plant P on its sensors and actuators), else for
    lock-step hardware-in-the-loop."""
    from ..build.exportlib import prepare_model
    from ..build.firmware import build_firmware
    from ..link.rig import rig_firmware, serve_rig
    from ..plants import get_plant

    tcp = _tcp_port(args.port or QEMU_UPLOAD_PORT)
    work = _project_dir(args).resolve()
    work.mkdir(parents=True, exist_ok=True)
    plant = get_plant(args.plant) if args.plant else None
    model_dir = prepare_model(args.model, work) if args.model else None
    if plant is not None:
        img = rig_firmware(board, plant, work, model_dir)
    elif model_dir is not None:
        img = build_firmware(board, model_dir, work / "fw" / "hil")
    else:
        raise NnmpcError("--plant P (the stand-in rig) or --model M (lock-step board) is needed "
                         "to boot the emulated board at --port")
    rig_log = Path(args.rig_log) if args.rig_log else (work / f"rig-{plant.name}.csv" if plant else None)
    code = serve_rig(board, img.elf, tcp, plant, seed=args.seed, rig_log=rig_log)
    return 0 if code in (0, 130) else 1


def cmd_flash(args) -> int:
    from ..build import pio
    from ..build.boards import load_board
    from ..link.ports import resolve_port

    board = load_board(args.board)
    if board.emulated and (args.plant or args.port):
        return _flash_emulated(args, board)
    if args.plant:
        raise NnmpcError(f"--plant wires a simulated plant to the emulated board; '{board.name}' "
                         "samples its own sensors (see its [[sensor]] channels)")
    project_dir = _project_dir(args).resolve()
    if args.model:
        cmd_build(argparse.Namespace(**{**vars(args), "core_only": False}))
    project = pio.open_project(board, project_dir, args.pio_core)
    port = args.port
    if board.emulated:
        port = port or QEMU_UPLOAD_PORT
        if port.lower() == "auto":
            port = QEMU_UPLOAD_PORT
        print(f"{board.name}: booting {project.elf} in QEMU; UART0 waits for a connection on "
              f"{port} (e.g. `nnmpc monitor --port {port}`); the run ends when the firmware exits")
    else:
        port = resolve_port(port, board)
        if port:
            print(f"{board.name}: uploading through {port}")
    pio.upload(project, port, capture=False)
    return 0


def cmd_export_lib(args) -> int:
    from ..build.boards import load_board
    from ..build.exportlib import export_lib

    board = load_board(args.board) if args.board else None
    out = export_lib(args.model, args.output, board=board, period_us=args.period_us)
    print(f"library: {out}")
    print(f"  Arduino IDE: copy it to your sketchbook's libraries/ folder and open "
          f"File > Examples > nnmpc > nnmpc_device")
    print(f"  PlatformIO: put it in a project's lib/ folder (or lib_deps = symlink://{out.resolve()})")
    return 0


def register(subparsers) -> None:
    """Add ``boards``, ``build``, ``flash`` and ``export-lib`` to the nnmpc command line."""
    b = subparsers.add_parser(
        "boards", help="list the boards in boards/ (core, FPU, clock, budget, serial, PlatformIO)")
    b.add_argument("--ports", action="store_true",
                   help="also list the serial ports present and which board they look like")
    b.set_defaults(func=cmd_boards)

    def common(p, model_required: bool) -> None:
        p.add_argument("--board", required=True, help="board name (see `nnmpc boards`)")
        p.add_argument("--model", required=model_required, metavar="M",
                       help="model file (.keras/.h5/.tflite/.onnx) or a folder with a compiled "
                            "model.c/model.h")
        p.add_argument("-o", "--out", metavar="DIR",
                       help=f"PlatformIO project folder (default: {DEFAULT_OUT}/BOARD)")
        p.add_argument("--period-us", type=int, metavar="N",
                       help="control period in microseconds (default: the board file's)")
        p.add_argument("--pio-core", type=Path, metavar="DIR",
                       help="PlatformIO home for platforms and packages (default: "
                            "$PLATFORMIO_CORE_DIR, else PROJECT/.pio-core)")
        p.add_argument("-v", "--verbose", action="store_true", help="show PlatformIO's output")
        p.add_argument("--local-sensors", action=argparse.BooleanOptionalAction, default=None,
                       help="on-board sensing: the fixed-rate loop samples the board file's "
                            "[[sensor]] channels and drives its [[actuator]] channels, "
                            "calibrated to physical units (default: the board file's [build] "
                            "local_sensors)")

    bd = subparsers.add_parser(
        "build", help="build firmware for a board with PlatformIO (`pio run`)",
        description="Compile the model if needed, check that the firmware core fits the board "
                    "(bare-metal cross-compile, offline), generate a PlatformIO project "
                    "(platformio.ini, src/, lib/nnmpc) and build it with `pio run`. The "
                    "emulated board builds offline through the local platform in "
                    "firmware/platformio; real boards need PlatformIO's registry once.")
    common(bd, model_required=True)
    bd.add_argument("--core-only", action="store_true",
                    help="only the offline core size/FPU check, no PlatformIO build "
                         "(with --board all: every board)")
    bd.set_defaults(func=cmd_build)

    fl = subparsers.add_parser(
        "flash", help="upload the built firmware (`pio run -t upload`)",
        description="Upload the firmware of the project built by `nnmpc build` (build it first "
                    "when --model is given). For the emulated board, boot it in QEMU with "
                    f"UART0 on a TCP port (default {QEMU_UPLOAD_PORT}).")
    common(fl, model_required=False)
    fl.add_argument("--port", metavar="PORT",
                    help="upload port, or `auto` to find the board by its USB VID:PID "
                         "(default: PlatformIO's own detection); for the emulated board the "
                         "loopback port it serves, e.g. socket://127.0.0.1:4321")
    fl.add_argument("--plant", metavar="P",
                    help="emulated board only: boot it as a stand-in rig, plant P simulated "
                         "behind its sensors and actuators (on-board sensing, as a real rig)")
    fl.add_argument("--rig-log", metavar="FILE.csv",
                    help="with --plant: the rig's log of every period, noise-free outputs "
                         "included (default: PROJECT/rig-P.csv)")
    fl.add_argument("--seed", type=int, default=0, help="with --plant: sensor-noise seed")
    fl.set_defaults(func=cmd_flash)

    ex = subparsers.add_parser(
        "export-lib", help="export the compiled model + runtime as an Arduino/PlatformIO library",
        description="Write an Arduino/PlatformIO library (library.properties, library.json, "
                    "src/, examples/nnmpc_device) with the compiled model, the C runtime, the "
                    "application core and the Arduino HAL, to build with your own toolchain.")
    ex.add_argument("--model", required=True, metavar="M",
                    help="model file or folder with a compiled model.c/model.h")
    ex.add_argument("-o", "--output", required=True, metavar="DIR", help="library folder")
    ex.add_argument("--board", help="write the board's serial/timer settings to nnmpc_config.h")
    ex.add_argument("--period-us", type=int, metavar="N", help="control period in microseconds")
    ex.set_defaults(func=cmd_export_lib)
