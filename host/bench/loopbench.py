"""Closed-loop bench: tracking and cost per period from the same run, with the real-time
budget of the stated rate active (``nnmpc bench --loop``).

Every run is the firmware image in the instruction counter (:mod:`.loopcount`, costed with
:data:`.cortexm.COST_TABLE`) in a closed loop with the simulated plant on the host: each
period decodes a SENSOR frame byte by byte, solves and writes a TELEMETRY frame, and the
solver's time budget (the period minus :data:`IO_US` for the frames) is checked on a SysTick
clock advanced from the estimated cycles at 168 MHz. The figures of a row are those of the
whole reference, sensor noise on, as the median over training seeds (the seed also seeds the
sensor noise) with the spread (max - min); the worst period and the periods stopped by the
budget are the worst over the seeds.

Rows: one per plant, net kind, controller and reference. Controllers: ``nr`` (Newton MPC),
``nr-nopreview`` (nr given only the present reference over its horizon), ``fd`` (the
reference paper's finite-difference scheme), ``pid`` and ``pid-preview`` (the PID given the
reference ``preview`` periods ahead, the preview tuned with the gains), both tuned on
:func:`..loop.pid.tuning_reference` (not a scored reference), and ``nr-nobudget`` (nr without
a time budget, for the receding-horizon MPC: what the budget costs in tracking).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import time
from pathlib import Path

import numpy as np

from .. import loop as R
from ..loop.pid import pid_mix, tuning_reference
from ..plants import get_plant
from .cortexm import COST_TABLE
from .loopcount import CLOCK_HZ, count_loop

#: Images: name -> (plant, net kind, stated rate in Hz, references).
IMAGES = {
    "msd": ("msd", "narx", 1000, ("step", "sine")),
    "tendon": ("tendon", "fk", 2000, ("step", "sine")),
    "tendon-narx": ("tendon", "narx", 1000, ("step", "sine")),
    "arm2": ("arm2", "fk", 2000, ("sine",)),
    "hasel": ("hasel", "narx", 250, ("step", "sine")),
}
CONTROLLERS = ("nr", "nr-nopreview", "fd", "pid", "pid-preview", "nr-nobudget")
#: Receding-horizon MPC images whose nr also runs without a budget (the 5 % target).
NOBUDGET = ("msd", "tendon-narx")
SEEDS = (0, 1, 2)
IO_US = 75             # of each period, left for the SENSOR and TELEMETRY frames
PREVIEWS = (0, 1, 2, 3, 4, 6, 8)
PREFIX = 150           # every run also reports its first PREFIX periods (the suite's check)
PID_TUNING_SEED = 100  # sensor noise while tuning (the runs use the seeds 0, 1, 2)
PROFILE_PERIODS = 60

REPO = Path(__file__).resolve().parents[2]
JSON_PATH = REPO / "bench" / "mpc_results.json"
MD_PATH = REPO / "bench" / "mpc_results.md"


def budget_us(rate_hz: float) -> int:
    """The solver's time budget at ``rate_hz``: the period minus IO_US."""
    return max(1, int(round(1e6 / rate_hz)) - IO_US)


def controllers_for(image: str) -> tuple[str, ...]:
    plant, kind, _, _ = IMAGES[image]
    out = ["nr", "nr-nopreview", "fd"]
    if not (plant == "tendon" and kind == "narx"):   # the PID uses no net: its tendon rows
        out += ["pid", "pid-preview"]                 # are those of the fk image
    if image in NOBUDGET:
        out.append("nr-nobudget")
    return tuple(out)


def image_name(plant: str, kind: str) -> str:
    return next(n for n, v in IMAGES.items() if v[0] == plant and v[1] == kind)


def tune_pids(plant_name: str, only: tuple[str, ...] = ("pid", "pid-preview")) -> dict:
    """The PID's gains for ``plant_name``, without and with preview, tuned on the plant's
    tuning reference (bias and mixing at its start; each run mixes at its own start)."""
    plant = get_plant(plant_name)
    st = R.setup_for(plant)
    tref = tuning_reference(plant)
    u0 = R.start_input(plant, tref[0], R.default_u_init(plant, st.kind), st.tracked)
    out = {}
    for name, previews in (("pid", (0,)), ("pid-preview", PREVIEWS)):
        if name not in only:
            continue
        g = R.tune_pid(plant, tref, u0, previews=previews, seed=PID_TUNING_SEED)
        out[name] = {k: g[k] for k in ("kp", "ki", "kd", "preview", "model_rms", "grid",
                                       "on_edge")}
    return out


_BUILT: dict = {}      # (image, seed) -> (NetInfo, image), shared with forked workers


def _run(job: dict) -> dict:
    image, ref, ctl, seed = job["image"], job["reference"], job["controller"], job["seed"]
    plant_name, kind, _, _ = IMAGES[image]
    plant = get_plant(plant_name)
    net, img = _BUILT[(image, seed)]
    refs = R.reference(plant, ref)[:job["periods"]]
    kw: dict = {"seed": seed, "prefix": PREFIX, "refs": refs, "profile": job.get("profile", False),
                "run_periods": job.get("run_periods")}
    base = ctl.split("-")[0]
    if base == "pid":
        g = dict(job["pid"])
        st = R.setup_for(plant)
        u0 = R.start_input(plant, refs[0], R.default_u_init(plant, net.kind), st.tracked)
        g["u_bias"], g["mix"] = pid_mix(plant, st.tracked, u0)
        kw.update(pid=g, preview=g["preview"])
    if ctl == "nr-nopreview":
        kw["hold_reference"] = True
    budget = 0 if ctl == "nr-nobudget" else job["budget_us"]
    t0 = time.monotonic()
    s = count_loop(plant_name, base, net, img, len(refs), budget, **kw)
    s["seconds"] = round(time.monotonic() - t0, 1)
    return {**job, "result": s}


#: How the bench compiles the nets' Jacobians. The compiler's ``auto`` picks reverse mode for
#: nets with fewer outputs than inputs (msd, tendon-narx, hasel), but the runtime's reverse
#: kernels run a scalar loop for fewer than four adjoint columns: forward mode costs
#: 10.6k instead of 18.3k cycles per Jacobian of the msd net, 15.4k instead of 26.3k for the
#: tendon NARX net, about the same for hasel (one output). ``nnmpc compile --jacobian forward``.
JACOBIAN = "forward"


def build_image(plant_name: str, kind: str, seed: int, work: Path, jacobian: str = JACOBIAN,
                log=print):
    """The default net of (plant, kind, seed), trained and cached as ``nnmpc run`` does, and
    its firmware image; with ``jacobian`` other than auto, compiled again in that mode."""
    from dataclasses import replace

    from nnmpc.compiler import compile_model

    from ..build.boards import load_board
    from ..build.firmware import build_firmware

    net, img = R.build_for(get_plant(plant_name), None, "qemu-m4f", work, seed=seed, log=log,
                           kind=kind)
    if jacobian == "auto":
        return net, img
    key = net.model_dir.parent.name
    d = work / f"nets-{jacobian}" / key
    compile_model(net.model_dir.parent / "m.keras", d / "model", name="model", jacobian=jacobian)
    net = replace(net, model_dir=d / "model")
    img = build_firmware(load_board("qemu-m4f"), net.model_dir, work / f"fw-{jacobian}" / key)
    return net, img


def _net_note(plant_name: str, kind: str, net) -> str:
    plant = get_plant(plant_name)
    st = R.setup_for(plant, kind)
    lag = R.output_lag(plant) if (kind == "fk" and st.lag) else 0.0
    return (f"{kind} {'x'.join(map(str, st.hidden))} tanh, {net.n_in} in / {net.n_out} out"
            + (f", lag {lag:.3f}" if lag else "")
            + (f", N={st.horizon}, Nc={st.moves}" if kind == "narx" or lag else "")
            + f", max {st.max_iter} iteration{'s' if st.max_iter > 1 else ''}")


def select(plants=None, nets=None, controllers=None) -> list[tuple[str, str]]:
    """(image, controller) pairs for the filters (plant names, net kinds, controllers)."""
    out = []
    for image, (plant, kind, _, _) in IMAGES.items():
        if plants and plant not in plants and image not in plants:
            continue
        if nets and kind not in nets:
            continue
        for c in controllers_for(image):
            if controllers and c not in controllers:
                continue
            out.append((image, c))
    return out


def run_loop_bench(*, plants=None, nets=None, controllers=None, rate_hz: float | None = None,
                   seeds=SEEDS, periods: int | None = None, workers: int = 2,
                   work: Path = REPO / "build" / "run", command: str = "nnmpc bench --loop",
                   profile: bool = True, jacobian: str = JACOBIAN, log=print) -> tuple[list[dict], dict]:
    """Run the selected rows; return (rows, meta)."""
    t_start = time.monotonic()
    pairs = select(plants, nets, controllers)
    if not pairs:
        raise ValueError("no bench row matches the filters")
    images = sorted({i for i, _ in pairs}, key=list(IMAGES).index)
    meta = {"command": command, "date": time.strftime("%Y-%m-%d"),
            "toolchain": _toolchain(), "board": "qemu-m4f (instruction counter)",
            "clock_hz": CLOCK_HZ, "io_us": IO_US, "seeds": list(seeds), "prefix": PREFIX,
            "cost_table": COST_TABLE, "jacobian": jacobian, "images": {}, "pid": {},
            "profiles": {}}
    for image in images:
        plant, kind, rate, _ = IMAGES[image]
        for seed in seeds:
            _BUILT[(image, seed)] = build_image(plant, kind, seed, work, jacobian, log)
        net, img = _BUILT[(image, seeds[0])]
        meta["images"][image] = {"plant": plant, "net": kind, "note": _net_note(plant, kind, net),
                                 "rate_hz": rate_hz or rate, "flash": img.size.flash,
                                 "ram_static": img.size.ram - img.size.stack,
                                 "stack": img.size.stack}
    for plant in sorted({IMAGES[i][0] for i, c in pairs if c.startswith("pid")}):
        log(f"tuning the PID for {plant} on its tuning reference")
        meta["pid"][plant] = tune_pids(plant)
    jobs = []
    for image, ctl in pairs:
        plant, kind, rate, refs = IMAGES[image]
        r_hz = rate_hz or rate
        for ref in refs:
            T = len(R.reference(get_plant(plant), ref))
            for seed in seeds:
                jobs.append({"image": image, "plant": plant, "net": kind, "reference": ref,
                             "controller": ctl, "seed": seed, "rate_hz": r_hz,
                             "budget_us": budget_us(r_hz), "periods": min(T, periods or T),
                             "pid": meta["pid"].get(plant, {}).get(ctl)})
    if profile:   # where the cycles go: nr, seed 0, first periods of the step reference
        for image in images:
            if ("nr" in controllers_for(image)) and (image, "nr") in pairs:
                plant, kind, rate, refs = IMAGES[image]
                jobs.append({"image": image, "plant": plant, "net": kind, "reference": refs[0],
                             "controller": "nr", "seed": seeds[0],
                             "rate_hz": rate_hz or rate, "budget_us": budget_us(rate_hz or rate),
                             "periods": PROFILE_PERIODS, "pid": None, "profile": True})
    jobs.sort(key=lambda j: -j["periods"] * (1 if j["controller"].startswith("pid") else 10))
    results = []
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            for r in pool.imap_unordered(_run, jobs):
                results.append(r)
                _log_result(r, log, len(results), len(jobs))
    else:
        for j in jobs:
            results.append(_run(j))
            _log_result(results[-1], log, len(results), len(jobs))
    for r in results:
        if r.get("profile"):
            s = r["result"]
            meta["profiles"][r["image"]] = {
                "reference": r["reference"], "periods": s["periods"],
                "cycles_mean": s["cycles_mean"],
                "by_function": {f: round(c) for f, c in list(s["profile"].items())[:12]}}
    rows = aggregate([r for r in results if not r.get("profile")], seeds)
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    return rows, meta


def _log_result(r: dict, log, i: int, n: int) -> None:
    s = r["result"]
    log(f"[{i}/{n}] {r['image']:11s} {r['reference']:4s} {r['controller']:12s} seed {r['seed']}"
        f"{' (profile)' if r.get('profile') else ''}: RMS {s['tracking_rms']:.4f}, "
        f"worst {s['cycles_max']:,} cycles, stopped {s['periods_stopped_by_budget']}/"
        f"{s['periods']} ({s['seconds']} s)")


def _med(v):
    return float(np.median(v))


def aggregate(results: list[dict], seeds) -> list[dict]:
    """Rows from per-seed results: medians over the seeds, spread, worst cycles."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["image"], r["controller"], r["reference"]), []).append(r)
    order = {(i, c, ref): n for n, (i, c, ref) in enumerate(
        (i, c, ref) for i in IMAGES for ref in IMAGES[i][3] for c in CONTROLLERS)}
    rows = []
    for key in sorted(groups, key=lambda k: order.get(k, 1e9)):
        rs = sorted(groups[key], key=lambda r: r["seed"])
        image, ctl, ref = key
        S = [r["result"] for r in rs]
        has_path = "path_error_rms" in S[0]
        rms = [s["tracking_rms"] for s in S]
        row = {"plant": rs[0]["plant"], "net": rs[0]["net"], "controller": ctl,
               "reference": ref, "estimator": False,
               "rate_hz": None if ctl == "nr-nobudget" else rs[0]["rate_hz"],
               # fd has no time budget in the firmware, the PID no solver
               "budget_us": 0 if ctl == "fd" else S[0]["budget_us"], "periods": S[0]["periods"],
               "stopped": max(s["periods_stopped_by_budget"] for s in S),
               "cycles_max": max(s["cycles_max"] for s in S),
               "cycles_mean": int(_med([s["cycles_mean"] for s in S])),
               "iterations_mean": round(_med([s["iterations_mean"] for s in S]), 2),
               "rms": round(_med(rms), 4), "spread": round(max(rms) - min(rms), 4),
               "path_error_rms": round(_med([s["path_error_rms"] for s in S]), 4)
               if has_path else None,
               "path_error_spread": round(max(s["path_error_rms"] for s in S)
                                          - min(s["path_error_rms"] for s in S), 4)
               if has_path else None,
               "path_error_timed_rms": round(_med([s["path_error_timed_rms"] for s in S]), 4)
               if has_path else None,
               "seeds": [r["seed"] for r in rs],
               "per_seed": {"rms": [round(v, 5) for v in rms],
                            "path_error_rms": [round(s["path_error_rms"], 5) for s in S]
                            if has_path else None,
                            "cycles_max": [s["cycles_max"] for s in S],
                            "stopped": [s["periods_stopped_by_budget"] for s in S],
                            "prefix": [{"periods": s["prefix"]["periods"],
                                        "rms": round(s["prefix"]["tracking_rms"], 6),
                                        "cycles_max": s["prefix"]["cycles_max"],
                                        "stopped": s["prefix"]["periods_stopped_by_budget"]}
                                       for s in S]}}
        if ctl.startswith("pid"):
            row["preview"] = rs[0]["pid"]["preview"]
        rows.append(row)
    return rows


def _toolchain() -> str:
    try:
        return subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True,
                              text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "arm-none-eabi-gcc (not found)"


# -- targets and the report --------------------------------------------------------------
def _row(rows, plant, net, ctl, ref):
    return next((r for r in rows if (r["plant"], r["net"], r["controller"], r["reference"])
                 == (plant, net, ctl, ref)), None)


def targets(rows: list[dict]) -> list[dict]:
    """The issue's targets, checked on the rows: what was asked, what was measured, met."""
    out = []

    def add(what, measured, ok):
        out.append({"target": what, "measured": measured, "met": bool(ok)})

    for image in NOBUDGET + ("hasel",):
        plant, kind, _, refs = IMAGES[image]
        for ref in refs:
            r, free = _row(rows, plant, kind, "nr", ref), _row(rows, plant, kind, "nr-nobudget", ref)
            if r is None:
                continue
            cap = int(CLOCK_HZ / r["rate_hz"])
            add(f"{image} {ref} nr: worst period <= {cap:,} cycles ({r['rate_hz']:g} Hz)",
                f"{r['cycles_max']:,}", r["cycles_max"] <= cap)
            add(f"{image} {ref} nr: <= 1 % of periods stopped by the budget",
                f"{r['stopped']}/{r['periods']}", r["stopped"] <= 0.01 * r["periods"])
            if free is not None:
                add(f"{image} {ref} nr: RMS within 5 % of nr without a budget",
                    f"{r['rms']:.4f} vs {free['rms']:.4f} mm ({r['rms'] / free['rms']:.3f}x)",
                    r["rms"] <= 1.05 * free["rms"])
    for image in ("tendon", "arm2"):
        plant, kind, _, refs = IMAGES[image]
        for ref in refs:
            r = _row(rows, plant, kind, "nr", ref)
            if r is None:
                continue
            cap = int(CLOCK_HZ / 2000)
            add(f"{image} {ref} nr (quasi-static inversion): worst period <= {cap:,} cycles "
                "(2 kHz)", f"{r['cycles_max']:,}", r["cycles_max"] <= cap)
    for image, ref in (("msd", "step"), ("tendon", "step")):
        plant, kind, _, _ = IMAGES[image]
        r = _row(rows, plant, kind, "nr", ref)
        pids = [p for p in (_row(rows, plant, "fk" if plant == "tendon" else kind, c, ref)
                            for c in ("pid", "pid-preview")) if p]
        if r is None or not pids:
            continue
        best = min(pids, key=lambda p: p["rms"])
        add(f"{image} {ref}: nr RMS <= 0.6x the best PID's ({best['controller']})",
            f"{r['rms']:.3f} / {best['rms']:.3f} mm = {r['rms'] / best['rms']:.2f}x",
            r["rms"] <= 0.6 * best["rms"])
    return out


def markdown(rows: list[dict], meta: dict) -> str:
    """bench/mpc_results.md from the rows and meta of one run."""
    seeds = ", ".join(map(str, meta["seeds"]))
    L = ["# On-device controllers: tracking and cost per period, one run", "",
         f"Made with `{meta['command']}` ({meta['date']}, {meta['toolchain']}; "
         f"{meta['seconds'] / 60:.0f} min). Machine-readable: `bench/mpc_results.json` (the "
         "rows) and `bench/mpc_results.meta.json` (this run's settings, PID tuning, "
         "profiles).", "",
         "**What runs where.** The plant is *simulated* on the host (sensor noise on). The "
         "controller is the firmware image built for the emulated Cortex-M4F board, run in "
         "an *instruction counter* (unicorn Cortex-M4 model + capstone, `host/bench/"
         "loopcount.py`); every period it decodes the SENSOR frame byte by byte, runs the "
         "controller and writes the TELEMETRY frame, and all of it is counted and costed with "
         "the Cortex-M4 cost table below (an *estimate*: no wait states, no bus contention). "
         "The solver's **time budget is active** in every row (except `nr-nobudget`): the "
         f"period at the stated rate minus {meta['io_us']} us for the frames, checked on a "
         "SysTick clock that the counter advances from the estimated cycles at "
         f"{meta['clock_hz'] / 1e6:.0f} MHz. The plant and the nets step every 10 ms (the "
         "nets are trained at that period): the rate is the rate the controller's work fits, "
         "with the budget of that rate; the tracking is that of the 10 ms loop. "
         f"**Seeds**: every row is the median over the training seeds {seeds} (seed s trains "
         "the net with seed s and seeds the sensor noise), with the spread (max - min); worst "
         "period and 'stopped' are the worst over the seeds. No state estimation: the "
         "controllers see the measured outputs (an estimator needs protocol changes; not yet "
         "done). Nothing here was measured on hardware; the reference paper's figures "
         "(>= 120 Hz, <= 2 mm on its tendon rig) are hardware figures, set beside these only "
         "in the README's table, which says so. **Jacobian**: the nets are compiled with "
         f"`--jacobian {meta.get('jacobian', 'auto')}` (docs/BENCH.md says why).", "",
         "Controllers: **nr** Newton MPC (damped Gauss-Newton / LM on the net's exact "
         "Jacobian); **nr-nopreview** the same, given only the present reference r[k] over "
         "its whole horizon (the bench writes it into the device's trajectory buffer every "
         "period); **fd** the reference paper's scheme (central finite differences, a scalar "
         "Hessian, clipping, one step per period; no time budget in the firmware); **pid** "
         "PID; **pid-preview** PID given r[k + L], the preview L tuned with the gains; "
         "**nr-nobudget** nr without a time budget (what the budget costs). Both PIDs are "
         "tuned on a tuning reference that is neither scored reference (steps to other "
         "levels, then the sine at 0.6x the frequency and 0.7x the amplitude), on the plant "
         "model with sensor noise; grid below. Errors: RMS over the whole run on the "
         "noise-free output; **path** = distance of the tip to the reference path (the "
         "polyline through the reference points; a step reference's path includes the "
         "jumps); **timed** = distance to where the tip should be now (the error's norm over "
         "the tracked pair).", "",
         "## Tracking and cost per period", "",
         "| plant | net | reference | controller | rate | budget | RMS (spread) | path RMS | "
         "timed path RMS | worst period | stopped | iterations | nr / this |",
         "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        nr = _row(rows, r["plant"], r["net"], "nr", r["reference"])
        ratio = "" if (nr is None or r is nr or not r['rms']) else f"{nr['rms'] / r['rms']:.2f}x"
        pe = (f"{r['path_error_rms']:.3f} mm" if r["path_error_rms"] is not None else "-")
        te = (f"{r['path_error_timed_rms']:.3f} mm" if r["path_error_timed_rms"] is not None
              else "-")
        rate = "-" if r["rate_hz"] is None else f"{r['rate_hz']:g} Hz"
        budget = "none" if not r["budget_us"] else f"{r['budget_us']} us"
        ctl = r["controller"] + (f" (L={r['preview']})" if r.get("preview") else "")
        L.append(f"| {r['plant']} | {r['net']} | {r['reference']} | {ctl} | {rate} | {budget} | "
                 f"{r['rms']:.3f} mm ({r['spread']:.3f}) | {pe} | {te} | "
                 f"{r['cycles_max']:,} | {r['stopped']}/{r['periods']} | "
                 f"{r['iterations_mean']} | {ratio} |")
    L += ["", "Worst period: estimated cycles of the longest period over all seeds, everything "
          "included (frame decoding, solve, telemetry); at 168 MHz, 168,000 cycles is 1 kHz and "
          "84,000 is 2 kHz. Stopped: periods in which the budget ended the solve (the best "
          "input found so far is applied; for the quasi-static inversion, which iterates up "
          "to its cap, that is its normal way to end a period). The PID's rows of the "
          "tendon segment are those of the fk image (the PID uses no net).", "",
          "## Targets", "", "| target | measured | met |", "|---|---:|:---:|"]
    for t in targets(rows):
        L.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    L += ["", "## nr against the best PID", "",
          "For every plant and reference with a PID row: nr's RMS over the better of pid and "
          "pid-preview's (below 1: nr better).", ""]
    for r in rows:
        if r["controller"] != "nr":
            continue
        net = "fk" if r["plant"] == "tendon" else r["net"]
        pids = [p for p in (_row(rows, r["plant"], net, c, r["reference"])
                            for c in ("pid", "pid-preview")) if p]
        if not pids:
            continue
        best = min(pids, key=lambda q: q["rms"])
        verdict = "nr better" if r["rms"] < best["rms"] else "**the PID is better: nr does " \
            "not beat it here**"
        L.append(f"- {r['plant']} ({r['net']}) {r['reference']}: nr {r['rms']:.3f} mm, "
                 f"{best['controller']} {best['rms']:.3f} mm: {r['rms'] / best['rms']:.2f}x, "
                 f"{verdict}.")
    L += ["", "## PID tuning", "",
          "Grid search on the plant model (the firmware's PID law, discrete gains, same "
          "sensor noise, seed "
          f"{PID_TUNING_SEED}), on the tuning reference; the first grid spans kp 0.01-100, ki 0 "
          "and 1e-4-10, kd 0 and 0.01-100, and a gain whose best value is at an end of its "
          "range is extended past it (up to 6 times), then finer grids around the best. "
          "'at an edge' names the gains still at an end of the range searched.", "",
          "| plant | controller | kp | ki | kd | preview | RMS on the tuning reference | "
          "range searched (kp / ki / kd) | extensions | at an edge |",
          "|---|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for plant, d in meta["pid"].items():
        for c, g in d.items():
            gr = g["grid"]
            L.append(f"| {plant} | {c} | {g['kp']:.4g} | {g['ki']:.4g} | {g['kd']:.4g} | "
                     f"{g['preview']} | {g['model_rms']:.4f} | {gr['kp'][0]:g}-{gr['kp'][1]:g} / "
                     f"0-{gr['ki'][1]:g} / 0-{gr['kd'][1]:g} | {gr['extensions']} | "
                     f"{', '.join(g['on_edge']) or 'none'} |")
    if meta.get("profiles"):
        L += ["", "## Where the cycles go (nr, seed 0, first periods of the first reference)", "",
              "| image | cycles per period (mean) | by function (estimated cycles per period) |",
              "|---|---:|---|"]
        for image, p in meta["profiles"].items():
            fs = ", ".join(f"{f} {c:,}" for f, c in list(p["by_function"].items())[:8])
            L.append(f"| {image} | {p['cycles_mean']:,} | {fs} |")
    L += ["", "## Images", "",
          "| image | net and controller | stated rate | flash | static RAM | stack reserved |",
          "|---|---|---:|---:|---:|---:|"]
    for image, d in meta["images"].items():
        L.append(f"| {image} | {d['note']} | {d['rate_hz']:g} Hz | {d['flash']:,} B | "
                 f"{d['ram_static']:,} B | {d['stack']:,} B |")
    L += ["", f"Cost table: {meta['cost_table']}.", ""]
    return "\n".join(L)


def write(rows: list[dict], meta: dict, json_path: Path, md_path: Path | None) -> None:
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(rows, indent=1) + "\n")
    meta_path(json_path).write_text(json.dumps(meta, indent=1) + "\n")
    if md_path is not None:
        Path(md_path).write_text(markdown(rows, meta))


def meta_path(json_path: Path) -> Path:
    json_path = Path(json_path)
    return json_path.with_name(json_path.stem + ".meta.json")


def read(json_path: Path = JSON_PATH) -> tuple[list[dict], dict]:
    return (json.loads(Path(json_path).read_text()),
            json.loads(meta_path(json_path).read_text()))


# -- what a change buys: solver sources of another commit, and the Jacobian modes ----------
COMPARE_JSON = REPO / "bench" / "mpc_compare.json"
COMPARE_MD = REPO / "bench" / "mpc_compare.md"


def compare(rev: str, *, images=("msd", "tendon-narx", "hasel", "tendon", "arm2"),
            periods: int = 60, work: Path = REPO / "build" / "run",
            command: str = "", log=print) -> dict:
    """nr on each image (seed 0, the first ``periods`` periods of the step reference), with
    the solver of git revision ``rev`` and of the working tree, the net's Jacobian compiled
    auto and forward, without a budget and with the stated rate's: the same counter, the same
    loop, one run."""
    import shutil
    import tempfile
    from dataclasses import replace

    from nnmpc.compiler import compile_model

    from ..build import firmware as FW
    from ..build.boards import load_board

    tmp = Path(tempfile.mkdtemp(prefix="nnmpc-compare-"))
    old = tmp / "firmware"
    shutil.copytree(FW.FIRMWARE_DIR, old)
    for f in ("nnmpc_solver.c", "nnmpc_solver.h"):
        (old / "solver" / f).write_text(subprocess.run(
            ["git", "show", f"{rev}:firmware/solver/{f}"], capture_output=True, text=True,
            check=True, cwd=REPO).stdout)
    board = load_board("qemu-m4f")
    rows = []
    try:
        for image in images:
            plant, kind, rate, _ = IMAGES[image]
            net0, _ = R.build_for(get_plant(plant), None, "qemu-m4f", work, seed=0,
                                  log=log, kind=kind)
            for mode in ("auto", "forward"):
                d = tmp / f"{image}-{mode}"
                compile_model(net0.model_dir.parent / "m.keras", d / "model", name="model",
                              jacobian=mode)
                net = replace(net0, model_dir=d / "model")
                for solver, fw_dir in ((rev, old), ("working tree", FW.FIRMWARE_DIR)):
                    saved, FW.FIRMWARE_DIR = FW.FIRMWARE_DIR, fw_dir
                    try:
                        img = FW.build_firmware(board, net.model_dir, d / f"fw-{len(rows)}")
                    finally:
                        FW.FIRMWARE_DIR = saved
                    for budget in (0, budget_us(rate)):
                        s = count_loop(plant, "nr", net, img, periods, budget,
                                       reference_kind="step")
                        rows.append({"image": image, "jacobian": mode, "solver": solver,
                                     "rate_hz": rate, "budget_us": budget,
                                     "cycles_mean": s["cycles_mean"],
                                     "cycles_max": s["cycles_max"],
                                     "stopped": s["periods_stopped_by_budget"],
                                     "periods": s["periods"], "rms": s["tracking_rms"]})
                        log(f"{image} jacobian {mode} solver {solver} budget {budget}: "
                            f"mean {s['cycles_mean']:,} worst {s['cycles_max']:,} stopped "
                            f"{s['periods_stopped_by_budget']}/{s['periods']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"command": command, "date": time.strftime("%Y-%m-%d"), "rev": rev,
            "periods": periods, "toolchain": _toolchain(), "rows": rows}


def compare_markdown(res: dict) -> str:
    L = ["# What each change buys: cycles per period of nr", "",
         f"Made with `{res['command']}` ({res['date']}, {res['toolchain']}). nr on each image, "
         f"seed 0, the first {res['periods']} periods of the step reference, the firmware in "
         "the instruction counter in closed loop with the simulated plant (as "
         "`nnmpc bench --loop`), everything in one run: the solver of "
         f"`{res['rev']}` against the working tree's, the net's Jacobian as the compiler's "
         "`auto` picks it and compiled `forward`, without a budget and with the stated rate's. "
         "Cycles are estimates (cost table in mpc_results.md). RMS is of these first periods "
         "only.", "",
         "| image | Jacobian | solver | budget | cycles mean | worst period | stopped | RMS |",
         "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        L.append(f"| {r['image']} | {r['jacobian']} | {r['solver']} | "
                 f"{str(r['budget_us']) + ' us' if r['budget_us'] else 'none'} | "
                 f"{r['cycles_mean']:,} | {r['cycles_max']:,} | {r['stopped']}/{r['periods']} | "
                 f"{r['rms']:.4f} |")
    L.append("")
    return "\n".join(L)
