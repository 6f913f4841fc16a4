"""`nnmpc compile`."""

from __future__ import annotations

from pathlib import Path


def cmd_compile(args) -> int:
    from nnmpc.compiler import compile_model, load_model
    from nnmpc.compiler.passes import optimise
    from nnmpc.compiler.backend.emit import check_out_dir
    from nnmpc.compiler.backend.report import format_report

    check_out_dir(Path(args.output))  # before the (slow) load
    graph = optimise(load_model(args.model))
    files = compile_model(graph, args.output, name=args.name, jacobian=args.jacobian)
    if args.report:
        print(format_report(graph, args.name))
    for f in files:
        print(f)
    return 0


def register(sub) -> None:
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
