"""Closed-loop runs: a plant on the host (or on the device) and a controller on the board.

Hardware-in-the-loop (``source="host"``): every period the host sends the plant's
measurement y[k] in a SENSOR frame; the device samples it, solves, and answers with a
TELEMETRY frame carrying u[k]; the host applies u[k] to the simulated plant for one period.
In lock-step (the default) the SENSOR frame is the device's clock, so the run does not
depend on how fast the emulator or the host is. ``source="device"`` simulates the plant on
the board itself (mass-spring-damper) at a fixed rate from SysTick; the host only listens.

Controllers (all on the device, same loop): ``nr`` (Newton MPC on the compiled net's exact
Jacobian), ``pid`` (tuned here on the plant), ``pid-preview`` (the PID given the reference
``preview`` periods ahead) and ``pid-ff`` (that PID with a feed-forward from the reference),
both tuned on the plant's tuning reference, ``fd`` (one finite-difference Newton step per
period, the reference implementation's scheme). See docs/MPC.md.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from ..link.client import LinkLost
from ..plants import Plant, get_plant
from .controller import PIDS
from .nets import prepare_model
from .pid import gains_for_run, preview_reference
from .plot import plot
from .references import reference
from .runlog import START_NOTE, RunLog, summary, write_csv
from .settings import configure, settings
from .setups import default_u_init, setup_for, start_input


def _held(k: int, y, u, ref):
    """The record of a lock-step period lost on the link: the input held, status 6."""
    from ..link.client import Telemetry
    return Telemetry(k, 0, 0.0, 0, LINK_LOST, -1, False, np.asarray(ref, float),
                     np.asarray(y, float), np.asarray(u, float))


LINK_LOST = 6


def run_closed_loop(client, plant: Plant, refs: np.ndarray, controller: str,
                    u_init: np.ndarray, *, source: str = "host", seed: int = 0, noise: bool = True,
                    timeout: float = 5.0, on_period=None, tries: int | None = 20,
                    preview: int = 0) -> RunLog:
    """Run the configured device against ``plant`` for len(refs) periods (lock-step HIL), or
    listen to the on-device plant run; return the log. ``preview`` (pid-preview, pid-ff): the
    device is given r[k + preview] (the uploaded trajectory shifted, the last row held) and
    the run is scored on r[k]. In lock-step a period whose frames are
    lost ``tries`` times over is lost (status 6, u held) and the run goes on; the count is in
    ``log.lost``, periods recovered by a resend in ``log.extra['resent']``."""
    st = setup_for(plant)
    p, m, T = len(plant.outputs), len(plant.inputs), len(refs)
    rng = np.random.default_rng(seed) if noise else None
    hello = client.hello_info or client.hello()
    client.upload_trajectory(preview_reference(refs, preview), plant.dt)
    ys, yt, us, its, sts, res, work = [], [], [], [], [], [], []
    lost = resent = 0
    t0 = time.monotonic()
    client.start()
    try:
        if source == "host":
            u = np.asarray(u_init[:m], float)
            x = plant.steady_state(u[None])[0]
            for k in range(T):
                y_true = plant.h(x, u)
                y = plant.measure(x, u, rng)
                if k < T - 1:
                    tel = client.step(k, y, timeout, tries=tries)
                else:  # the last period is worth waiting for: both sides then end at T
                    try:
                        tel = client.step(k, y, timeout * client.NOISY_FACTOR)
                    except LinkLost:
                        raise
                    except NnmpcError:
                        tel = None
                if tel is None:  # lost on the link after every resend: u is held
                    lost += 1
                    tel = _held(k, y, u, refs[k])
                else:
                    resent += client.last_step_tries > 1   # a frame lost, recovered by a resend
                u = tel.u
                ys.append(y), yt.append(y_true), us.append(u)
                its.append(tel.iterations), sts.append(tel.status)
                res.append(tel.residual), work.append(tel.work)
                x = plant.step(x, u)
                if on_period:
                    on_period(k, tel)
        else:
            k_expected = 0
            while len(us) < T:
                tel = client.telemetry(timeout)
                if tel is None:
                    raise NnmpcError(f"no telemetry within {timeout} s after period {k_expected}")
                lost += max(0, tel.k - k_expected)
                k_expected = tel.k + 1
                ys.append(tel.y), yt.append(tel.y), us.append(tel.u)
                its.append(tel.iterations), sts.append(tel.status)
                res.append(tel.residual), work.append(tel.work)
                if on_period:
                    on_period(tel.k, tel)
    except BaseException:
        try:  # leave the device stopped, but keep the real cause of the failure
            client.stop()
        except NnmpcError:
            pass
        raise
    client.stop()
    return RunLog(plant.name, controller, plant.dt, st.tracked,
                  [s.name for s in plant.outputs], [s.name for s in plant.inputs],
                  np.asarray(refs[:len(us)], float), np.array(ys), np.array(yt), np.array(us),
                  np.array(its), np.array(sts), np.array(res), np.array(work),
                  hello.clock_hz, lost, time.monotonic() - t0,
                  extra={"start": START_NOTE if source == "host" else "on-device plant",
                         "resent": resent, "resends": client.resends,
                         "brief": getattr(client, "brief_periods", 0)},
                  output_units=[s.unit for s in plant.outputs],
                  input_units=[s.unit for s in plant.inputs])


@dataclass
class RunResult:
    log: RunLog
    summary: dict
    csv: Path | None
    png: Path | None
    firmware: object = None


def build_for(plant: Plant, model: str | None, board_name: str, work: Path, seed: int = 0,
              log=print, kind: str | None = None, estimator: bool = False):
    """Prepare the net and the firmware image for ``board_name``; return (NetInfo, image).
    ``estimator``: the image carries the Kalman filter (``NNMPC_ESTIMATOR``)."""
    from ..build.boards import load_board
    from ..build.firmware import build_firmware

    board = load_board(board_name)
    work = Path(work)
    before = {p for p in (work / "model", work / "fw") if p.exists()}
    try:
        net = prepare_model(plant, model, work, seed=seed, log=log, kind=kind)
        img = build_firmware(board, net.model_dir,
                             work / "fw" / (net.model_dir.parent.name + ("-ekf" if estimator
                                                                         else "")),
                             defines={"NNMPC_ESTIMATOR": "1"} if estimator else None)
    except BaseException:
        # Nothing half-made stays behind: a compiled model or image folder this call made.
        for p in (work / "model", work / "fw"):
            if p.exists() and p not in before:
                shutil.rmtree(p, ignore_errors=True)
        raise
    return net, img


def run_on_board(plant_name: str, controller: str, reference_kind: str, *, model: str | None = None,
                 board_name: str = "qemu-m4f", work: Path = Path("build/run"),
                 log_path: Path | None = None, sim: str = "host", seed: int = 0,
                 duration: float | None = None, noise: bool = True, built=None,
                 net_kind: str | None = None, log=print, budget_us: int = 0,
                 horizon: int | None = None, moves: int | None = None,
                 icount: int | None = None, config=None,
                 estimator: bool = False) -> RunResult:
    """Build (or reuse ``built``), start the emulated board, run the loop, write CSV + PNG.

    ``budget_us``, ``horizon`` and ``moves`` go to the controller settings (0 / None: the
    setup's); ``icount`` runs QEMU with ``-icount shift=N`` (one instruction every 2^N ns of
    emulated time), so that a time budget counts instructions rather than host time.
    ``estimator`` (or ``estimator = true`` in ``config``): nr and fd start their rollouts from
    the on-device Kalman filter's state (a narx net; the image is built with it)."""
    from ..build.boards import load_board
    from ..link.client import DeviceClient
    from ..link.qemu import QemuBoard

    plant = get_plant(plant_name)
    board = load_board(board_name)
    if not board.emulated:
        raise NnmpcError(f"board '{board_name}' is not emulated: use `nnmpc monitor` with the "
                         "board's port, or an emulated board")
    estimator = estimator or bool(config is not None and config.estimator)
    net, img = built or build_for(plant, model, board_name, work, seed, log, kind=net_kind,
                                  estimator=estimator)
    refs = reference(plant, reference_kind, duration)
    # Every controller starts with the plant at rest at the reference's first point.
    u0 = start_input(plant, refs[0], default_u_init(plant, net.kind), setup_for(plant).tracked)
    pid = None if config is not None else gains_for_run(plant, controller, refs, u0,
                                                         Path(work) / "pid", log)
    period_us = int(round(plant.dt * 1e6)) if sim == "device" else 0
    if config is not None:  # a settings file (nnmpc run --config), as on a real board
        msgs = config.messages(source=sim, u_init=u0)
    else:
        msgs = settings(plant, net, controller, source=sim, period_us=period_us, pid=pid,
                        u_init=u0, budget_us=budget_us, horizon=horizon, moves=moves,
                        estimator=estimator and controller not in PIDS)
    with QemuBoard(img.elf, board, icount=icount) as port:
        client = DeviceClient(port, timeout=10.0)
        hello = client.hello()
        if config is not None:
            config.check_hello(hello, board_sensors=False)
        u_init = configure(client, msgs)
        preview = config.preview if config is not None else int((pid or {}).get("preview", 0))
        run = run_closed_loop(client, plant, refs, controller, u_init, source=sim, seed=seed,
                              noise=noise, preview=preview)
        run.extra["stats"] = client.stats()
        client.exit()
    used = pid if pid is not None else (config.pid if config is not None else None)
    if used is not None:   # the gains the device ran with (the summary's "pid")
        run.extra["pid"] = {k: used[k] for k in ("kp", "ki", "kd", "kff", "kdff", "lead",
                                                 "preview", "model_rms") if k in used}
    summ = summary(run)
    summ["image_flash"] = img.size.flash
    summ["image_ram"] = img.size.ram
    if "pid" in run.extra:
        summ["pid"] = run.extra["pid"]
    csv_path = png_path = None
    if log_path is not None:
        csv_path = write_csv(run, Path(log_path))
        png_path = plot(run, Path(log_path).with_suffix(".png"))
    return RunResult(run, summ, csv_path, png_path, img)
