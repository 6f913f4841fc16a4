"""``nnmpc plot`` (draw a run log or a collect log, CSV or MCAP, as a PNG)."""

from __future__ import annotations


def cmd_plot(args) -> int:
    from ..loop.logs import plot_log

    from ..errors import NnmpcError

    if args.output and len(args.logs) > 1:
        raise NnmpcError("-o names one PNG: give one log with it")
    for log in args.logs:
        print(f"wrote {plot_log(log, args.output)}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "plot", help="draw a run log or a collect log (.csv or .mcap) as a PNG",
        description="Draw a log as a PNG next to it (or -o FILE.png). A run log (`nnmpc run "
                    "--log`, `nnmpc monitor --out/--log`) gives the plot `nnmpc run` draws: "
                    "reference against output, the inputs and the solver status; a collect "
                    "log gives its inputs and outputs against t. See docs/LOGS.md.")
    p.add_argument("logs", nargs="+", metavar="LOG", help="log file(s), .csv or .mcap")
    p.add_argument("-o", "--output", metavar="FILE.png",
                   help="PNG to write (one log only; default: the log's name with .png)")
    p.set_defaults(func=cmd_plot)
