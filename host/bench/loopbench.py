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
reference ``preview`` periods ahead, the preview tuned with the gains), ``pid-ff`` (the PID
with a feed-forward from the reference the device holds, ``lead`` periods ahead: the static
inverse through the mixing matrix and a term on the reference's step, tuned with the gains
and the preview), all tuned on :func:`..loop.pid.tuning_reference` (not a scored reference),
and ``nr-nobudget`` (nr without a time budget, for the receding-horizon MPC: what the budget
costs in tracking). Rows with ``"estimator": true`` are nr with the on-device extended Kalman
filter (an image built with NNMPC_ESTIMATOR): the msd's always, every NARX image's with
``estimator=True`` (``nnmpc bench --loop --estimator``).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import time
from pathlib import Path

import numpy as np

from .. import loop as R
from ..loop.pid import TUNING_SEED, pid_at_start, tune_on_tuning_reference
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
CONTROLLERS = ("nr", "nr-nopreview", "fd", "pid", "pid-preview", "pid-ff", "nr-nobudget")
PIDS = ("pid", "pid-preview", "pid-ff")
#: Images whose nr also runs with the extended Kalman filter in every run (the others with
#: ``estimator=True``: every NARX image).
ESTIMATOR_IMAGES = ("msd",)
#: Receding-horizon MPC images whose nr also runs without a budget (the 5 % target).
NOBUDGET = ("msd", "tendon-narx")
SEEDS = (0, 1, 2)
IO_US = 75             # of each period, left for the SENSOR and TELEMETRY frames
PREFIX = 150           # every run also reports its first PREFIX periods (the suite's check)
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
        out += list(PIDS)                             # are those of the fk image
    if image in NOBUDGET:
        out.append("nr-nobudget")
    return tuple(out)


def image_name(plant: str, kind: str) -> str:
    return next(n for n, v in IMAGES.items() if v[0] == plant and v[1] == kind)


def tune_pids(plant_name: str, only: tuple[str, ...] = PIDS) -> dict:
    """The PID's gains for ``plant_name``, without and with preview, and with feed-forward,
    tuned on the plant's tuning reference (bias and mixing at its start; each run mixes at its
    own start)."""
    plant = get_plant(plant_name)
    return {name: tune_on_tuning_reference(plant, name) for name in PIDS if name in only}


def _tune_job(job):
    return job[0], job[1], tune_pids(job[0], (job[1],))[job[1]]


_BUILT: dict = {}      # (image, seed) -> (NetInfo, image), shared with forked workers


def _run(job: dict) -> dict:
    image, ref, ctl, seed = job["image"], job["reference"], job["controller"], job["seed"]
    plant_name, kind, _, _ = IMAGES[image]
    plant = get_plant(plant_name)
    est = bool(job.get("estimator"))
    net, img = _BUILT[(image, seed, est)]
    refs = R.reference(plant, ref)[:job["periods"]]
    kw: dict = {"seed": seed, "prefix": PREFIX, "refs": refs, "profile": job.get("profile", False),
                "run_periods": job.get("run_periods")}
    base = ctl.split("-")[0]
    if base == "pid":
        st = R.setup_for(plant)
        u0 = R.start_input(plant, refs[0], R.default_u_init(plant, net.kind), st.tracked)
        g = pid_at_start(plant, job["pid"], u0)
        kw.update(pid=g, preview=g["preview"])
    if est:
        kw["estimator"] = True
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
                log=print, estimator: bool = False):
    """The default net of (plant, kind, seed), trained and cached as ``nnmpc run`` does, and
    its firmware image; with ``jacobian`` other than auto, compiled again in that mode;
    ``estimator``: the image carries the extended Kalman filter (NNMPC_ESTIMATOR)."""
    from dataclasses import replace

    from nnmpc.compiler import compile_model

    from ..build.boards import load_board
    from ..build.firmware import build_firmware

    net, img = R.build_for(get_plant(plant_name), None, "qemu-m4f", work, seed=seed, log=log,
                           kind=kind, estimator=estimator)
    if jacobian == "auto":
        return net, img
    key = net.model_dir.parent.name
    d = work / f"nets-{jacobian}" / key
    if not (d / "model").is_dir() or not estimator:
        compile_model(net.model_dir.parent / "m.keras", d / "model", name="model",
                      jacobian=jacobian)
    net = replace(net, model_dir=d / "model")
    img = build_firmware(load_board("qemu-m4f"), net.model_dir,
                         work / f"fw-{jacobian}" / (key + ("-ekf" if estimator else "")),
                         defines={"NNMPC_ESTIMATOR": "1"} if estimator else None)
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
                   profile: bool = True, jacobian: str = JACOBIAN, estimator: bool = False,
                   log=print) -> tuple[list[dict], dict]:
    """Run the selected rows; return (rows, meta). nr of the ESTIMATOR_IMAGES (with
    ``estimator``: of every NARX image) also runs with the extended Kalman filter."""
    t_start = time.monotonic()
    pairs = select(plants, nets, controllers)
    if not pairs:
        raise ValueError("no bench row matches the filters")
    images = sorted({i for i, _ in pairs}, key=list(IMAGES).index)
    est_images = [i for i in images if (i, "nr") in pairs and IMAGES[i][1] == "narx"
                  and (estimator or i in ESTIMATOR_IMAGES)]
    meta = {"command": command, "date": time.strftime("%Y-%m-%d"),
            "toolchain": _toolchain(), "board": "qemu-m4f (instruction counter)",
            "clock_hz": CLOCK_HZ, "io_us": IO_US, "seeds": list(seeds), "prefix": PREFIX,
            "cost_table": COST_TABLE, "jacobian": jacobian, "images": {}, "pid": {},
            "profiles": {}}
    for image in images:
        plant, kind, rate, _ = IMAGES[image]
        for seed in seeds:
            _BUILT[(image, seed, False)] = build_image(plant, kind, seed, work, jacobian, log)
            if image in est_images:
                _BUILT[(image, seed, True)] = build_image(plant, kind, seed, work, jacobian,
                                                          log, estimator=True)
        net, img = _BUILT[(image, seeds[0], False)]
        meta["images"][image] = {"plant": plant, "net": kind, "note": _net_note(plant, kind, net),
                                 "rate_hz": rate_hz or rate, "flash": img.size.flash,
                                 "ram_static": img.size.ram - img.size.stack,
                                 "stack": img.size.stack}
    tune = sorted({(IMAGES[i][0], c) for i, c in pairs if c in PIDS},
                  key=lambda t: (t[0], PIDS.index(t[1])))
    if tune:
        log(f"tuning the PIDs on their tuning references: {', '.join(map('/'.join, tune))}")
        if workers > 1:
            with mp.get_context("fork").Pool(workers) as pool:
                tuned = pool.map(_tune_job, tune)
        else:
            tuned = [_tune_job(t) for t in tune]
        for plant, ctl, g in tuned:
            meta["pid"].setdefault(plant, {})[ctl] = g
    jobs = []
    for image, ctl, est in [(i, c, False) for i, c in pairs] + [(i, "nr", True)
                                                                 for i in est_images]:
        plant, kind, rate, refs = IMAGES[image]
        r_hz = rate_hz or rate
        for ref in refs:
            T = len(R.reference(get_plant(plant), ref))
            for seed in seeds:
                jobs.append({"image": image, "plant": plant, "net": kind, "reference": ref,
                             "controller": ctl, "seed": seed, "rate_hz": r_hz,
                             "budget_us": budget_us(r_hz), "periods": min(T, periods or T),
                             "pid": meta["pid"].get(plant, {}).get(ctl), "estimator": est})
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
    ctl = r["controller"] + ("+ekf" if r.get("estimator") else "")
    log(f"[{i}/{n}] {r['image']:11s} {r['reference']:4s} {ctl:12s} seed {r['seed']}"
        f"{' (profile)' if r.get('profile') else ''}: RMS {s['tracking_rms']:.4f}, "
        f"worst {s['cycles_max']:,} cycles, stopped {s['periods_stopped_by_budget']}/"
        f"{s['periods']} ({s['seconds']} s)")


def _med(v):
    return float(np.median(v))


def aggregate(results: list[dict], seeds) -> list[dict]:
    """Rows from per-seed results: medians over the seeds, spread, worst cycles."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["image"], r["controller"], r["reference"],
                           bool(r.get("estimator"))), []).append(r)
    order = {(i, c, ref, e): n for n, (i, c, ref, e) in enumerate(
        (i, c, ref, e) for i in IMAGES for ref in IMAGES[i][3] for c in CONTROLLERS
        for e in (False, True))}
    rows = []
    for key in sorted(groups, key=lambda k: order.get(k, 1e9)):
        rs = sorted(groups[key], key=lambda r: r["seed"])
        image, ctl, ref, est = key
        S = [r["result"] for r in rs]
        has_path = "path_error_rms" in S[0]
        rms = [s["tracking_rms"] for s in S]
        row = {"plant": rs[0]["plant"], "net": rs[0]["net"], "controller": ctl,
               "reference": ref, "estimator": est,
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
            if "lead" in rs[0]["pid"]:
                row["lead"] = rs[0]["pid"]["lead"]
        rows.append(row)
    return rows


def _toolchain() -> str:
    try:
        return subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True,
                              text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "arm-none-eabi-gcc (not found)"


# -- targets and the report --------------------------------------------------------------
def _row(rows, plant, net, ctl, ref, estimator: bool = False):
    return next((r for r in rows if (r["plant"], r["net"], r["controller"], r["reference"],
                                     bool(r.get("estimator"))) == (plant, net, ctl, ref,
                                                                   estimator)), None)


def _best_pid(rows, plant, ref):
    """The PID row (of pid, pid-preview, pid-ff) with the lowest RMS for the plant and
    reference (the tendon's PID rows are those of its fk image), or None."""
    net = "fk" if plant == "tendon" else next(
        (r["net"] for r in rows if r["plant"] == plant and r["controller"] in PIDS), None)
    pids = [p for p in (_row(rows, plant, net, c, ref) for c in PIDS) if p]
    return min(pids, key=lambda p: p["rms"]) if pids else None


def _label(r) -> str:
    """A row's controller as the report names it: the PID's preview P and lead L, '+ EKF'."""
    ctl = r["controller"]
    if r.get("lead") is not None:
        ctl += f" (P={r.get('preview', 0)}, L={r['lead']})"
    elif r.get("preview"):
        ctl += f" (L={r['preview']})"
    return ctl + (" + EKF" if r.get("estimator") else "")


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
    r = _row(rows, "msd", "narx", "nr", "sine", estimator=True)
    if r is not None:
        add("msd sine nr + EKF: RMS <= 0.06 mm (median of the seeds)", f"{r['rms']:.4f} mm",
            r["rms"] <= 0.06)
    for image, ref in (("msd", "step"), ("tendon", "step")):
        plant, kind, _, _ = IMAGES[image]
        r = _row(rows, plant, kind, "nr", ref)
        best = _best_pid(rows, plant, ref)
        if r is None or best is None:
            continue
        add(f"{image} {ref}: nr RMS <= 0.6x the best PID's ({best['controller']}, of "
            f"{', '.join(PIDS)})",
            f"{r['rms']:.3f} / {best['rms']:.3f} mm = {r['rms'] / best['rms']:.2f}x",
            r["rms"] <= 0.6 * best["rms"])
    return out


def markdown(rows: list[dict], meta: dict) -> str:
    """bench/mpc_results.md from the rows and meta of one run."""
    seeds = ", ".join(map(str, meta["seeds"]))
    ekf = [r for r in rows if r.get("estimator")]
    ekf_where = ", ".join(sorted({f"{r['plant']} ({r['net']})" for r in ekf}))
    estimation = (
        "**State estimation**: the controllers see the measured outputs, except the rows "
        f"marked '+ EKF' ({ekf_where}): nr with the on-device extended Kalman filter on the "
        "net's output lags (the image built with NNMPC_ESTIMATOR, its settings sent in the "
        "ESTIMATOR message; the rollouts start from the filtered lags and the disturbance "
        "estimate, and the filter's time counts against the budget)." if ekf else
        "**State estimation**: none in these rows: the controllers see the measured outputs "
        "(the on-device extended Kalman filter, NNMPC_ESTIMATOR, has rows with "
        "`nnmpc bench --loop --estimator`).")
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
         f"period and 'stopped' are the worst over the seeds. {estimation} Nothing here was "
         "measured on hardware; the reference paper's figures "
         "(>= 120 Hz, <= 2 mm on its tendon rig) are hardware figures, set beside these only "
         "in the README's table, which says so. **Jacobian**: the nets are compiled with "
         f"`--jacobian {meta.get('jacobian', 'auto')}` (docs/BENCH.md says why).", "",
         "Controllers: **nr** Newton MPC (damped Gauss-Newton / LM on the net's exact "
         "Jacobian); **nr-nopreview** the same, given only the present reference r[k] over "
         "its whole horizon (the bench writes it into the device's trajectory buffer every "
         "period); **fd** the reference paper's scheme (central finite differences, a scalar "
         "Hessian, clipping, one step per period; no time budget in the firmware); **pid** "
         "PID; **pid-preview** PID given r[k + L], the preview L tuned with the gains; "
         "**pid-ff** PID with feed-forward (P: the PID is given r[k + P]; per tracked output "
         "v += kff (r[k + P + L] - y_bias) + kdff (r[k + P + L + 1] - r[k + P + L]) from the "
         "device's trajectory buffer, before the mixing, y_bias the output at the input bias: "
         "kff = 1 is the static inverse of the quasi-static gain; kff, kdff, P and L tuned "
         "with the gains); "
         "**nr-nobudget** nr without a time budget (what the budget costs). The PIDs are "
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
        ctl = _label(r)
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
          "For every plant and reference with a PID row: nr's RMS over the best of pid, "
          "pid-preview and pid-ff's (below 1: nr better; the targets ask for 0.6x or less).",
          ""]
    for r in rows:
        if r["controller"] != "nr":
            continue
        best = _best_pid(rows, r["plant"], r["reference"])
        if best is None:
            continue
        x = r["rms"] / best["rms"]
        if x <= 0.6:
            verdict = "nr better, within 0.6x"
        elif x < 1:
            verdict = "nr better, but **not by 0.6x: nr does not reach 0.6x the best PID here**"
        else:
            verdict = "**the PID is better: nr does not beat it here**"
        L.append(f"- {r['plant']} ({r['net']}) {r['reference']}: {_label(r)} {r['rms']:.3f} mm, "
                 f"{best['controller']} {best['rms']:.3f} mm: {x:.2f}x, {verdict}.")
    L += ["", "## PID tuning", "",
          "Grid search on the plant model (the firmware's PID law, discrete gains, same "
          "sensor noise, seed "
          f"{TUNING_SEED}), on the tuning reference; the first grid spans kp 0.01-100, ki 0 "
          "and 1e-4-10, kd 0 and 0.01-100, and a gain whose best value is at an end of its "
          "range is extended past it (up to 6 times), then finer grids around the best. "
          "pid-ff: the five gains together on a coarser first grid (kp 0.01-100 in 7 values, "
          "ki 0 and 1e-4-10 in 6, kd 0 and 0.01-100 in 5, kff 0 and 0.5-2, kdff 0 and 0.1-100), "
          "extended the same way, for every preview P (0-8) with L = 0 and every lead L (0-8) "
          "at the best P (a P or L whose best is the largest searched is extended past it), "
          "then finer grids (5 values a gain) around the two best (P, L) and around "
          "pid-preview's optimum (a special case of pid-ff: kff = kdff = 0, L = 0), so pid-ff "
          "does at least as well on the tuning reference. 'at an edge' names "
          "the gains (and P, L) still at an end of the range searched.", "",
          "| plant | controller | kp | ki | kd | kff | kdff | preview P | lead L | RMS on the "
          "tuning reference | range searched (kp / ki / kd / kff / kdff; P; L) | extensions | "
          "at an edge |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for plant, d in meta["pid"].items():
        for c, g in d.items():
            gr = g["grid"]
            ff = "kff" in g
            rng = (f"{gr['kp'][0]:g}-{gr['kp'][1]:g} / 0-{gr['ki'][1]:g} / 0-{gr['kd'][1]:g}"
                   + (f" / 0-{gr['kff'][1]:g} / 0-{gr['kdff'][1]:g}; {gr['preview'][0]}-"
                      f"{gr['preview'][1]}; {gr['lead'][0]}-{gr['lead'][1]}" if ff else ""))
            ext = gr["extensions"] + (gr.get("preview_extensions", 0) + gr.get(
                "lead_extensions", 0) if ff else 0)
            L.append(f"| {plant} | {c} | {g['kp']:.4g} | {g['ki']:.4g} | {g['kd']:.4g} | "
                     + (f"{g['kff']:.4g} | {g['kdff']:.4g} | " if ff else "- | - | ")
                     + f"{g['preview']} | {g['lead'] if ff else '-'} | {g['model_rms']:.4f} | "
                     f"{rng} | {ext} | {', '.join(g['on_edge']) or 'none'} |")
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
