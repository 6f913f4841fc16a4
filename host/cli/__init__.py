"""The ``nnmpc`` command line: argument parsing only. Each command group has a module here
whose ``register`` adds its sub-commands and whose handlers call the stage that does the work."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from nnmpc.compiler import CompileError, __version__

from ..errors import NnmpcError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nnmpc",
        description="Compile small neural nets and a Newton MPC to C for Cortex-M "
                    "microcontrollers, run them on an emulated or real board, and talk to them.",
    )
    p.add_argument("--version", action="version", version=f"nnmpc {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    for group in ("compile", "demo", "boards"):
        import_module(f"nnmpc.host.cli.{group}").register(sub)
    sub.add_parser("plants", help="list the simulated plants with their signals and limits")
    for group in ("train", "bench", "run", "collect", "sweep", "logs"):  # train: `plants` too
        import_module(f"nnmpc.host.cli.{group}").register(sub)
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

