"""`nnmpc demo`."""

from __future__ import annotations

from pathlib import Path


def cmd_demo(args) -> int:
    from ..loop.demo import print_summary, run_demo

    r = run_demo(Path(args.out), board_name=args.board, samples=args.samples,
                 queries=args.queries, seed=args.seed, closed_loop=not args.no_loop)
    print_summary(r, args.board)
    return 0 if r.max_rel_err <= 1e-5 else 1


def register(sub) -> None:
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
