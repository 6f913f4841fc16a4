"""`nnmpc compile`."""

from __future__ import annotations

from pathlib import Path

from nnmpc.compiler import CompileError


def parse_input_shapes(values: list[str] | None):
    """``--input-shape`` values (``NAME=20,3`` or ``20,3``) as load_model's ``input_shapes``."""
    if not values:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for v in values:
        name, sep, dims = v.rpartition("=")
        name = name.strip()
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if (sep and not name) or not shape or any(d <= 0 for d in shape):
            raise CompileError(f"--input-shape '{v}' is not NAME=d1,d2,... or d1,d2,... "
                               "(positive integers, batch axis left out; e.g. x=20,3)")
        key = name if sep else ""
        if key in shapes:
            raise CompileError(f"--input-shape '{v}': a shape for "
                               + (f"input '{name}'" if key else "the input")
                               + " is given twice")
        shapes[key] = shape
    if "" in shapes:
        if len(shapes) > 1:
            raise CompileError("--input-shape without NAME= fits a one-input model only; name "
                               "every input when giving several (e.g. x=20,3 h0=8)")
        return shapes[""]
    return shapes


def cmd_compile(args) -> int:
    from nnmpc.compiler import compile_model, load_model
    from nnmpc.compiler.passes import optimise
    from nnmpc.compiler.backend.emit import check_out_dir
    from nnmpc.compiler.backend.report import format_report

    input_shapes = parse_input_shapes(args.input_shape)
    check_out_dir(Path(args.output))  # before the (slow) load
    graph = optimise(load_model(args.model, input_shapes,
                                allow_lambda=getattr(args, "allow_lambda", False)))
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
    c.add_argument("--input-shape", action="append", metavar="NAME=d1,d2,...",
                   help="fix the dynamic dimensions of input NAME (a None time axis, a symbolic "
                        "ONNX dimension) to this shape, batch axis left out, e.g. "
                        "--input-shape x=20,3; repeat it for several inputs; a one-input model "
                        "may leave NAME= out (--input-shape 20,3). A size that contradicts the "
                        "model's is an error")
    c.add_argument("--allow-lambda", action="store_true",
                   help="load Keras Lambda layers, which runs Python code stored in the file "
                        "(only for a trusted file); those that are linear maps of their input "
                        "(slices, splits, reshapes, scalings) are compiled")
    c.set_defaults(func=cmd_compile)
