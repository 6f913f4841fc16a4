"""Closed-loop benchmarks of the on-device controllers: tracking and cycles per period.

    .venv/bin/python bench/mpc_bench.py [--out bench] [--periods 300] [--quick]

1. Tracking: ``nnmpc run`` on the emulated board (QEMU mps2-an386, hardware-in-the-loop in
   lock-step, sensor noise on) for the mass-spring-damper (step, sine), the tendon segment
   (step, circle) and the 2-link arm (circle), with nr / pid / fd; the plant's default net
   (trained and cached in build/run). The plant starts at rest at the reference's first
   point; errors are on the noise-free plant output, over the whole run.
2. Cost per period on a Cortex-M4F: the *same firmware image* runs in the unicorn CPU
   emulator (host/bench/cortexm.py) in a closed loop with the host plant; every byte of each
   SENSOR frame goes through ``nnmpc_app_on_byte`` and everything it executes is counted:
   frame decoding, the solve, the telemetry frame and its UART writes (as CPU work: a FIFO or
   DMA is assumed, not the wire time). Cycles are an estimate from the simplified Cortex-M4
   cost table (host/bench/cortexm.COST_TABLE), no wait states.
3. Firmware size: flash (text + data) and static RAM (data + bss) of the image, plus stack.

Writes ``mpc_results.json`` and ``mpc_results.md`` in --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nnmpc.host import loop as R  # noqa: E402
from nnmpc.host.build.boards import load_board  # noqa: E402
from nnmpc.host.bench.cortexm import COST_TABLE  # noqa: E402
from nnmpc.host.bench.loopcount import (BUDGET_US, CLOCK_HZ, UnicornLoop,  # noqa: E402,F401
                                         count_loop)
from nnmpc.host.plants import get_plant  # noqa: E402

#: Images: name -> (plant, net kind (None: the plant's default)).
IMAGES = {"msd": ("msd", None), "tendon": ("tendon", None), "tendon-narx": ("tendon", "narx"),
          "arm2": ("arm2", None)}
CASES = [("msd", "step"), ("msd", "sine"), ("tendon", "step"), ("tendon", "sine"),
         ("tendon-narx", "step"), ("tendon-narx", "sine"), ("arm2", "sine")]
CONTROLLERS = ("nr", "pid", "fd")


def controllers_for(image: str) -> tuple[str, ...]:
    # The PID does not use the net: its tendon rows are the same for both images.
    return ("nr", "fd") if image == "tendon-narx" else CONTROLLERS


def tracking(plant_name: str, reference: str, controller: str, built, work: Path) -> dict:
    kind = built[0].kind
    r = R.run_on_board(plant_name, controller, reference, built=built, work=work,
                       log_path=work / "logs" / f"{plant_name}_{kind}_{reference}_{controller}.csv",
                       log=lambda *a: None)
    s = dict(r.summary)
    if "pid" in r.log.extra:
        s["pid_gains"] = {k: round(v, 4) for k, v in r.log.extra["pid"].items()}
    return s


def markdown(res: dict) -> str:
    L = ["# On-device controllers: tracking, cost per period, size", "",
         f"Made with `{res['command']}` ({res['date']}, {res['toolchain']}).", "",
         "Plants run on the host and exchange one SENSOR / TELEMETRY frame pair per period "
         "with the emulated Cortex-M4F (QEMU mps2-an386, lock-step hardware-in-the-loop, sensor "
         "noise on). The plant starts at rest at the reference's first point (every "
         "controller starts from the input that holds it there); errors are RMS over the whole "
         "run, on the noise-free plant output. "
         "nr: Newton MPC (damped Gauss-Newton / LM on the net's exact Jacobian); pid: PID tuned "
         "by grid search on the plant model for the same reference; fd: one Newton step per "
         "period with central finite differences, a scalar Hessian and clipping (the reference "
         "implementation's scheme). tendon-narx: the tendon segment through a dynamic net "
         "(receding-horizon MPC) instead of the forward-kinematics net (quasi-static inversion, "
         "the reference paper's use); the PID does not use a net, its tendon rows apply. "
         "Forward-kinematics nets (tendon, arm2) are inverted through the plant's output lag "
         "(a first-order pole per period identified from a step response of the plant) over "
         "a short horizon.", "",
         "## Tracking", "",
         "| plant | reference | controller | RMS error | path error RMS / max | iterations mean | nr's RMS / this RMS |",
         "|---|---|---|---:|---:|---:|---:|"]
    for key, rows in res["tracking"].items():
        plant, ref = key.split("/")
        unit = "mm"
        nr = rows["nr"]["tracking_rms"]
        for c in rows:
            s = rows[c]
            pe = (f"{s['path_error_rms']:.3f} / {s['path_error_max']:.3f} {unit}"
                  if "path_error_rms" in s else "-")
            ratio = "" if c == "nr" else f"{nr / s['tracking_rms']:.2f}x"
            L.append(f"| {plant} | {ref} | {c} | {s['tracking_rms']:.3f} {unit} | {pe} | "
                     f"{s['iterations_mean']} | {ratio} |")
    L += ["", "Path error (tendon, arm2): distance of the tip (x, y) to the reference path (the "
          "polyline through the reference points); the step reference's path includes the "
          "straight jumps between targets.", "",
          "## Cost per period on a Cortex-M4F (estimate)", "",
          "Everything one period executes on the device: decoding the SENSOR frame byte by "
          "byte, the solve, and building and writing the TELEMETRY frame (closed loop, step "
          f"reference, {res['count_periods']} periods, same image as in QEMU). Cost table: "
          f"{COST_TABLE}.", "",
          "The solver runs with a time budget of "
          f"{BUDGET_US} us per period on the SysTick clock, which the counter advances from the "
          "estimated cycles at 168 MHz; 'stopped' counts the periods the budget cut short "
          "(the best input found so far is applied). 'RMS here' is the tracking error of this "
          "closed loop (step reference, first periods only).", "",
          "| plant | net | controller | instructions mean | cycles mean | cycles p99 | cycles max "
          "| loop rate at 168 MHz (worst period) | stopped by budget | RMS here |",
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for plant, rows in res["cycles"].items():
        for c in rows:
            s = rows[c]
            L.append(f"| {plant} | {res['nets'][plant]} | {c} | {s['instructions_mean']:,} | "
                     f"{s['cycles_mean']:,} | {s['cycles_p99']:,} | {s['cycles_max']:,} | "
                     f"{s['loop_rate_hz_at_168MHz_worst']:,} Hz | "
                     f"{s['periods_stopped_by_budget']}/{s['periods']} | "
                     f"{s['tracking_rms_in_this_loop']} |")
    L += ["", "## Firmware size", "",
          "Whole image (startup, UART driver, protocol, solver, controllers, on-device plant, the "
          "net); static RAM includes the 16 KB reference-trajectory buffer "
          "(`NNMPC_TRAJ_FLOATS` = 4096) and about 10 KB of solver workspace.", "",
          "| plant image | flash | static RAM | stack reserved | stack used (max over the loop) |",
          "|---|---:|---:|---:|---:|"]
    for plant, s in res["size"].items():
        used = max(v["stack_bytes_max"] for v in res["cycles"][plant].values())
        L.append(f"| {plant} ({res['nets'][plant]}) | {s['flash']:,} B | {s['ram_static']:,} B | "
                 f"{s['stack']:,} B | {used:,} B |")
    L += ["", "Targets: loop >= 1 kHz at 168 MHz (<= 168,000 cycles per period, everything "
          "included); MSD step RMS <= 0.5x PID's; tendon path error <= 0.5 mm; nr better than "
          "the PID on the tendon and arm circles and tendon steps; firmware <= 32 KB flash.", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench"))
    ap.add_argument("--work", default=str(ROOT / "build" / "run"))
    ap.add_argument("--periods", type=int, default=300, help="periods counted in unicorn")
    ap.add_argument("--markdown-only", action="store_true",
                    help="only rewrite mpc_results.md from mpc_results.json")
    args = ap.parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    if args.markdown_only:
        res = json.loads((out / "mpc_results.json").read_text())
        (out / "mpc_results.md").write_text(markdown(res))
        return 0
    t0 = time.monotonic()
    res = {"command": "python bench/mpc_bench.py" + (f" --periods {args.periods}"
                                                      if args.periods != 300 else ""),
           "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
           "toolchain": subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True,
                                       text=True).stdout.splitlines()[0],
           "board": "qemu-m4f", "clock_hz": CLOCK_HZ, "count_periods": args.periods,
           "tracking": {}, "cycles": {}, "size": {}, "nets": {}}
    built = {}
    for name, (plant, kind) in IMAGES.items():
        built[name] = R.build_for(get_plant(plant), None, "qemu-m4f", work, log=print, kind=kind)
        net, img = built[name]
        st = R.setup_for(get_plant(plant), net.kind)
        lag = R.output_lag(get_plant(plant)) if (net.kind == "fk" and st.lag) else 0.0
        res["nets"][name] = (f"{net.kind} {'x'.join(map(str, st.hidden))} tanh, "
                             f"{net.n_in} in / {net.n_out} out"
                             + (f", lag {lag:.3f}" if lag else "")
                             + (f", N={st.horizon}, Nc={st.moves}"
                                if net.kind == "narx" or lag else ""))
        res["size"][name] = {"flash": img.size.flash, "ram_static": img.size.ram - img.size.stack,
                             "stack": img.size.stack}
    for name, ref in CASES:
        plant = IMAGES[name][0]
        res["tracking"][f"{name}/{ref}"] = {}
        for c in controllers_for(name):
            s = tracking(plant, ref, c, built[name], work)
            res["tracking"][f"{name}/{ref}"][c] = s
            print(f"{name:11s} {ref:5s} {c:4s} RMS {s['tracking_rms']:.4f}"
                  + (f" path {s['path_error_rms']:.4f}" if "path_error_rms" in s else ""),
                  flush=True)
    for name, (plant, _) in IMAGES.items():
        res["cycles"][name] = {}
        for c in controllers_for(name):
            s = count_loop(plant, c, *built[name], args.periods)
            res["cycles"][name][c] = s
            print(f"{name:11s} {c:4s} cycles mean {s['cycles_mean']:,} max {s['cycles_max']:,} "
                  f"-> {s['loop_rate_hz_at_168MHz_worst']:,} Hz", flush=True)
    res["seconds"] = round(time.monotonic() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mpc_results.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "mpc_results.md").write_text(markdown(res))
    print(f"wrote {out / 'mpc_results.json'} and {out / 'mpc_results.md'} "
          f"in {res['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
