"""The ``nnmpc bench`` subcommand."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ..bench.netbench import BENCH_DIR, NETS, REPO, run_bench
from ..bench.report import write_results


def _csv(v):
    return [x for x in v.split(",") if x] if v else None


def cmd_bench_loop(args, command: str) -> int:
    from ..bench import loopbench as LB

    plants, controllers = _csv(args.plant), _csv(args.controller)
    nets = _csv(args.net)
    for c in controllers or ():
        if c not in LB.CONTROLLERS:
            print(f"nnmpc: error: unknown controller '{c}' (known: {', '.join(LB.CONTROLLERS)})",
                  file=sys.stderr)
            return 2
    known = {v[0] for v in LB.IMAGES.values()} | set(LB.IMAGES)
    for p in plants or ():
        if p not in known:
            print(f"nnmpc: error: unknown plant '{p}' (known: {', '.join(sorted(known))})",
                  file=sys.stderr)
            return 2
    if args.compare_solver:
        import json
        res = LB.compare(args.compare_solver, command=command,
                         **({"images": tuple(plants)} if plants else {}),
                         **({"periods": args.periods} if args.periods else {}))
        if not args.no_write:
            LB.COMPARE_JSON.write_text(json.dumps(res, indent=1) + "\n")
            LB.COMPARE_MD.write_text(LB.compare_markdown(res))
            print(f"wrote {LB.COMPARE_JSON} and {LB.COMPARE_MD}")
        return 0
    seeds = tuple(int(s) for s in args.seeds.split(","))
    try:
        rows, meta = LB.run_loop_bench(plants=plants, nets=nets, controllers=controllers,
                                       rate_hz=args.rate_hz, seeds=seeds, periods=args.periods,
                                       workers=args.workers, work=Path(args.work_loop),
                                       command=command, jacobian=args.jacobian,
                                       estimator=args.estimator)
    except ValueError as e:
        print(f"nnmpc: error: {e}", file=sys.stderr)
        return 2
    full = not (plants or nets or controllers or args.rate_hz or args.periods) and \
        seeds == LB.SEEDS and args.jacobian == LB.JACOBIAN and not args.estimator
    json_path = Path(args.json) if args.json else (LB.JSON_PATH if full else None)
    md_path = Path(args.markdown) if args.markdown else (LB.MD_PATH if full else None)
    for r in rows:
        pe = "" if r["path_error_rms"] is None else \
            f" path {r['path_error_rms']:.4f} timed {r['path_error_timed_rms']:.4f}"
        print(f"{r['plant']:7s} {r['net']:4s} {r['reference']:4s} {LB._label(r):22s} "
              f"{r['rate_hz'] or '-':>5} Hz RMS {r['rms']:.4f} (spread {r['spread']:.4f}){pe} "
              f"worst {r['cycles_max']:,} cycles, stopped {r['stopped']}/{r['periods']}")
    for t in LB.targets(rows):
        print(f"target {'met    ' if t['met'] else 'NOT MET'}: {t['target']}: {t['measured']}")
    if json_path is not None:
        LB.write(rows, meta, json_path, md_path)
        print(f"wrote {json_path}, {LB.meta_path(json_path)}" + (f" and {md_path}" if md_path
                                                                 else ""))
    return 0


def cmd_bench(args) -> int:
    command = "nnmpc " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] \
        else "nnmpc bench"
    if args.loop:
        return cmd_bench_loop(args, command)
    if args.json is None:
        args.json = str((BENCH_DIR / "results.json").relative_to(REPO))
    if args.markdown is None:
        args.markdown = str((REPO / "docs" / "BENCH.md").relative_to(REPO))
    keys = args.nets or sorted(NETS)
    for k in keys:
        if k not in NETS:
            print(f"nnmpc: error: unknown net '{k}' (known: {', '.join(sorted(NETS))})",
                  file=sys.stderr)
            return 2
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
    b.add_argument("--json", default=None,
                   help="machine-readable results (default: bench/results.json; with --loop, "
                        "bench/mpc_results.json for the full run, else none)")
    b.add_argument("--markdown", default=None,
                   help="report (default: docs/BENCH.md; with --loop, bench/mpc_results.md "
                        "for the full run, else none)")
    b.add_argument("--inputs", type=int, default=16, help="random inputs per net (default: 16)")
    b.add_argument("--seed", type=int, default=0, help="seed of the inputs (default: 0)")
    b.add_argument("--no-write", action="store_true", help="print only; write no files")
    g = b.add_argument_group(
        "closed loop (--loop)",
        "Tracking and cost per period from one run: the firmware in the Cortex-M4 instruction "
        "counter in closed loop with the simulated plant, the time budget of the stated rate "
        "active, medians over training seeds (docs/BENCH.md).")
    g.add_argument("--loop", action="store_true",
                   help="run the closed-loop bench instead of the benchmark nets")
    g.add_argument("--plant", help="plants (comma-separated; msd, tendon, arm2, hasel, or an "
                                   "image name such as tendon-narx; default: all)")
    g.add_argument("--net", help="net kinds (fk, narx; default: all)")
    g.add_argument("--controller", help="controllers (comma-separated: nr, nr-nopreview, fd, "
                                        "pid, pid-preview, pid-ff, nr-nobudget; default: all)")
    g.add_argument("--estimator", action="store_true",
                   help="nr of every NARX image also with the on-device extended Kalman filter "
                        "(an image built with NNMPC_ESTIMATOR; rows with \"estimator\": true); "
                        "without it, only the msd's nr has these rows")
    g.add_argument("--rate-hz", type=float, default=None,
                   help="rate whose budget applies (default: each plant's stated rate)")
    g.add_argument("--seeds", default="0,1,2", help="training seeds (default: 0,1,2)")
    g.add_argument("--periods", type=int, default=None,
                   help="periods per run (default: the whole reference)")
    g.add_argument("--jacobian", choices=("auto", "forward", "reverse"), default="forward",
                   help="Jacobian mode the nets are compiled with (default: forward; see "
                        "docs/BENCH.md)")
    g.add_argument("--compare-solver", metavar="REV",
                   help="instead: nr's cycles per period with the solver of git revision REV "
                        "and the working tree's, Jacobian auto and forward (bench/mpc_compare.*)")
    g.add_argument("--workers", type=int, default=2, help="parallel runs (default: 2)")
    g.add_argument("--work-loop", default="build/run",
                   help="nets and images of the loop bench (default: build/run, shared with "
                        "nnmpc run)")
    b.set_defaults(func=cmd_bench)
