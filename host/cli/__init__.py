"""The ``nnmpc`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnmpc.compiler import CompileError, __version__

from ..errors import NnmpcError


def cmd_compile(args) -> int:
    from nnmpc.compiler import compile_model, load_model
    from nnmpc.compiler.passes import optimise
    from nnmpc.compiler.backend.report import format_report

    graph = optimise(load_model(args.model))
    files = compile_model(graph, args.output, name=args.name, jacobian=args.jacobian)
    if args.report:
        print(format_report(graph, args.name))
    for f in files:
        print(f)
    return 0


def cmd_demo(args) -> int:
    from ..loop.demo import print_summary, run_demo

    r = run_demo(Path(args.out), board_name=args.board, samples=args.samples,
                 queries=args.queries, seed=args.seed, closed_loop=not args.no_loop)
    print_summary(r, args.board)
    return 0 if r.max_rel_err <= 1e-5 else 1


def cmd_plants(args) -> int:
    from ..plants import PLANTS

    for name, cls in sorted(PLANTS.items()):
        print(f"{name}: {cls.description}")
        for kind, sigs in (("in ", cls.inputs), ("out", cls.outputs)):
            for s in sigs:
                print(f"    {kind} {s.name:<10} [{s.low:g}, {s.high:g}] {s.unit}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nnmpc",
        description="Compile small neural nets and a Newton MPC to C for Cortex-M "
                    "microcontrollers, run them on an emulated or real board, and talk to them.",
    )
    p.add_argument("--version", action="version", version=f"nnmpc {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("compile", help="compile a .keras/.h5/.tflite/.onnx model to C99",
                       description="Compile MODEL to DIR/NAME.h and DIR/NAME.c (plus the runtime "
                                   "files they need). Build them with `cc -std=c99 -c DIR/*.c`. "
                                   "Nothing is written if the model cannot be compiled.")
    c.add_argument("model", help="model file (.keras, .h5, .tflite, .onnx)")
    c.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    c.add_argument("--name", default="model",
                   help="C prefix of every generated symbol and file name (default: model)")
    c.add_argument("--report", action="store_true",
                   help="print MACs, parameters, flash and RAM bytes per layer")
    c.add_argument("--jacobian", choices=("auto", "forward", "reverse"), default="auto",
                   help="how NAME_jacobian differentiates: forward mode (cost ~ INPUT_SIZE model "
                        "passes), reverse mode (~ OUTPUT_SIZE passes), or auto: the cheaper")
    c.set_defaults(func=cmd_compile)

    d = sub.add_parser("demo", help="train, compile, build and run a model on the emulated board",
                       description="Train a forward-kinematics MLP for a 2-link arm, compile it, "
                                   "build Cortex-M4F firmware, run it in QEMU and compare its "
                                   "answers over serial with TensorFlow; then close the loop "
                                   "with the on-device Newton MPC (and the PID baseline).")
    d.add_argument("--out", default="build/demo", help="work folder (default: build/demo)")
    d.add_argument("--board", default="qemu-m4f", help="emulated board (default: qemu-m4f)")
    d.add_argument("--samples", type=int, default=4000, help="training samples (default: 4000)")
    d.add_argument("--queries", type=int, default=1000, help="inputs sent to the board (default: 1000)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    d.add_argument("--no-loop", action="store_true",
                   help="skip the closed-loop stage (Newton MPC tracing a circle)")
    d.set_defaults(func=cmd_demo)

    __import__("nnmpc.host.cli.boards", fromlist=["register"]).register(sub)
    pl = sub.add_parser("plants", help="list the simulated plants with their signals and limits")
    pl.set_defaults(func=cmd_plants)
    __import__("nnmpc.host.cli.train", fromlist=["register"]).register(sub)
    __import__("nnmpc.host.cli.bench", fromlist=["register"]).register(sub)
    __import__("nnmpc.host.cli.run", fromlist=["register"]).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (CompileError, NnmpcError) as e:
        print(f"nnmpc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnmpc: interrupted", file=sys.stderr)
        return 130

