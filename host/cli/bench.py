"""The ``nnmpc bench`` subcommand."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ..bench.netbench import BENCH_DIR, NETS, REPO, run_bench
from ..bench.report import write_results


def cmd_bench(args) -> int:
    keys = args.nets or sorted(NETS)
    for k in keys:
        if k not in NETS:
            print(f"nnmpc: error: unknown net '{k}' (known: {', '.join(sorted(NETS))})",
                  file=sys.stderr)
            return 2
    command = "nnmpc " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] \
        else "nnmpc bench"
    res = run_bench(Path(args.work), keys, inputs=args.inputs, seed=args.seed, command=command)
    if not args.no_write:
        write_results(res, Path(args.json), Path(args.markdown))
        print(f"wrote {args.json} and {args.markdown}")
    for key, n in res["nets"].items():
        for impl, e in n["impl"].items():
            line = (f"{key} {impl:<10} predict {e['predict']['instructions']:>7.0f} instr "
                    f"{e['predict']['cycles_est']:>7.0f} cyc (est.)")
            if "jacobian" in e:
                line += (f"  jacobian {e['jacobian']['instructions']:>7.0f} instr "
                         f"{e['jacobian']['cycles_est']:>7.0f} cyc")
            line += f"  flash {e['flash_predict']:>6} B  RAM {e['ram_static']:>5} B"
            line += f"  err y {e['max_rel_err_y_vs_tf']:.1e}"
            if "max_rel_err_J_vs_tf" in e:
                line += f" J {e['max_rel_err_J_vs_tf']:.1e}"
            print(line)
        r = n["ratio_to_naive"]
        print(f"{key} vs naive (same run): predict cycles {r['predict_cycles_est']:.2f}x, "
              f"jacobian cycles {r['jacobian_cycles_est']:.2f}x, flash {r['flash_predict']:.2f}x; "
              f"nnmpc jacobian/predict {n['jacobian_over_predict']:.2f}")
    return 0


def register(subparsers) -> None:
    b = subparsers.add_parser(
        "bench", help="flash, RAM, instructions and estimated Cortex-M4 cycles of benchmark nets",
        description="Build the benchmark nets (A: 3-32t-32t-3, B: 6-64r-64r-64r-4, float32, "
                    "random weights with fixed seeds) with nnmpc and as naive C loops, for a "
                    "Cortex-M4F; report flash and RAM from the ELF images, and instructions and "
                    "estimated cycles per predict and jacobian counted in an emulated Cortex-M4.")
    b.add_argument("nets", nargs="*", metavar="NET", help=f"nets to run (default: all of "
                   f"{', '.join(sorted(NETS))})")
    b.add_argument("--work", default="build/bench", help="work folder (default: build/bench)")
    b.add_argument("--json", default=str((BENCH_DIR / "results.json").relative_to(REPO)),
                   help="machine-readable results (default: bench/results.json)")
    b.add_argument("--markdown", default=str((REPO / "docs" / "BENCH.md").relative_to(REPO)),
                   help="report (default: docs/BENCH.md)")
    b.add_argument("--inputs", type=int, default=16, help="random inputs per net (default: 16)")
    b.add_argument("--seed", type=int, default=0, help="seed of the inputs (default: 0)")
    b.add_argument("--no-write", action="store_true", help="print only; write no files")
    b.set_defaults(func=cmd_bench)
