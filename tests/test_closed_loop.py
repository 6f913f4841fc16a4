"""Closed loop on the emulated Cortex-M4F over serial: the mass-spring-damper on the host
(hardware-in-the-loop, lock-step) against nr / pid / fd on the device, the on-device plant at
a fixed SysTick rate streamed to the monitor, and faults on the link while the loop runs."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from nnmpc.host.link import protocol as P
from nnmpc.host.link import protocol_msgs as M
from nnmpc.host.build.boards import load_board
from nnmpc.host.link.client import DeviceClient, DeviceError
from nnmpc.host.build.firmware import build_firmware
from nnmpc.host.loop.monitor import monitor
from nnmpc.host.plants import get_plant
from nnmpc.host.link.qemu import QemuBoard
from nnmpc.host.loop import (configure, prepare_model, reference, run_on_board, settings,
                            write_csv)

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def board():
    return load_board("qemu-m4f")


@pytest.fixture(scope="module")
def msd(tmp_path_factory, board):
    """A small NARX net for the MSD (trained briefly) and its firmware image."""
    from nnmpc.host.learn.datasets import make_dataset
    from nnmpc.host.learn.train import train_mlp

    plant = get_plant("msd")
    d = tmp_path_factory.mktemp("msd")
    ds = make_dataset(plant, "narx", 3000, seed=0, lags=(2, 2))
    res = train_mlp(ds.x_train, ds.y_train, ds.x_val, ds.y_val, hidden=(16, 16), epochs=40,
                    seed=0, patience=10)
    res.model.save(d / "m.keras")
    net = prepare_model(plant, str(d / "m.keras"), d)
    assert (net.kind, net.na, net.nb) == ("narx", 2, 2)
    img = build_firmware(board, net.model_dir, d / "fw")
    return plant, net, img, d


def _check_run(r, plant):
    log = r.log
    assert log.lost == 0
    assert len(log.u) == len(log.ref)
    assert np.all(log.u >= plant.u_low - 1e-6) and np.all(log.u <= plant.u_high + 1e-6)
    assert not np.any(log.status == 3), "non-finite guard fired"
    assert r.log.extra["stats"]["frames_bad"] == 0
    assert r.log.extra["stats"]["rejected"] == 0


def test_msd_newton_mpc_tracks_a_step_and_beats_pid(msd, tmp_path):
    plant, net, img, _ = msd
    nr = run_on_board("msd", "nr", "step", built=(net, img), duration=4.0,
                      log_path=tmp_path / "nr.csv", log=lambda *a: None)
    pid = run_on_board("msd", "pid", "step", built=(net, img), duration=4.0,
                       log_path=tmp_path / "pid.csv", log=lambda *a: None)
    _check_run(nr, plant)
    _check_run(pid, plant)
    assert nr.log.rms() < 6.0                 # mm, steps of 40-70 mm included
    assert nr.log.rms() < 0.7 * pid.log.rms()
    # Settled at the end of the last step (noise-free output, offset-free through the
    # disturbance estimate).
    tail = slice(-40, None)
    assert np.abs(nr.log.y_true[tail, 0] - nr.log.ref[tail, 0]).mean() < 1.5
    assert 1 <= nr.log.iterations.max() <= 4 and nr.log.iterations.min() >= 1
    # The CSV and the plot are there, with the promised columns.
    with open(nr.csv) as fh:
        header = next(csv.reader(fh))
    assert header[:6] == ["t", "ref_x", "y_x", "y_v", "u_F", "iterations"] and \
        header[6] == "status"
    assert nr.png.stat().st_size > 10_000


def test_msd_finite_difference_baseline_closes_the_loop(msd):
    plant, net, img, _ = msd
    fd = run_on_board("msd", "fd", "sine", built=(net, img), duration=3.0, log=lambda *a: None)
    _check_run(fd, plant)
    assert np.all(fd.log.iterations == 1)
    assert fd.log.rms() < 15.0               # it follows the 30 mm sine, if loosely


def test_on_device_plant_runs_at_a_fixed_rate_and_streams_to_the_monitor(msd, board, tmp_path):
    plant, net, img, _ = msd
    T = 150
    refs = np.zeros((T + 20, 2))
    refs[10:, 0] = 20.0
    msgs = settings(plant, net, "nr", source="device", period_us=10_000)
    with QemuBoard(img.elf, board) as port:
        c = DeviceClient(port)
        c.hello()
        configure(c, msgs)
        c.upload_trajectory(refs)
        c.start()
        st = monitor(port, tmp_path / "mon.csv", max_frames=T, duration=30.0)
        c.stop()
        stats = c.stats()
    assert st.frames == T and st.lost == 0 and st.corrupt == 0
    rows = list(csv.DictReader(open(tmp_path / "mon.csv")))
    k = np.array([int(r["k"]) for r in rows])
    assert np.array_equal(k, np.arange(k[0], k[0] + T))
    y = np.array([[float(r["y_0"]), float(r["y_1"])] for r in rows])
    u = np.array([float(r["u_0"]) for r in rows])
    assert abs(y[-20:, 0].mean() - 20.0) < 1.5
    # The C plant on the device integrates like the host's model of the same plant.
    x = y[0].copy()
    for i in range(T - 1):
        x = plant.step(x, u[i:i + 1])
        assert np.allclose(x, y[i + 1], atol=2e-3 * (1 + np.abs(x))), i
    assert stats["periods"] >= T


def test_link_faults_while_the_loop_runs_are_dropped_and_counted(msd, board):
    plant, net, img, _ = msd
    with QemuBoard(img.elf, board) as port:
        c = DeviceClient(port)
        c.hello()
        configure(c, settings(plant, net, "nr"))
        c.upload_trajectory(reference(plant, "step", 1.0))
        c.start()
        c.send_sensor(0, [0.0, 0.0])
        assert c.telemetry(5.0).k == 0
        # A sensor frame with a flipped bit, one cut short, and garbage: no period runs.
        f = bytearray(P.encode_frame(P.SENSOR, 50, M.SensorRequest(k=1, y=[5.0, 0.0]).pack()))
        f[4] ^= 0x20
        port.write(bytes(f) + P.encode_frame(P.SENSOR, 51, M.SensorRequest(k=1, y=[1, 2]).pack())[:7]
                   + b"\x00" + b"\x42\x13\x37\x00")
        assert c.telemetry(0.5) is None
        # Settings are refused while running, and nothing of them is applied.
        with pytest.raises(DeviceError, match="stop it first"):
            c.configure(M.ConfigRequest(controller=1, p=2, m=1, na=2, nb=2, horizon=1, moves=1,
                                        max_iter=1, telemetry_every=1, fd_eps=1e-3))
        # A sensor frame of the wrong size is refused with an error, not applied.
        with pytest.raises(DeviceError, match="payload length"):
            c.request(P.SENSOR, M.SensorRequest(k=1, y=[1.0]).pack())
        c.send_sensor(1, [0.1, 0.0])
        t = c.telemetry(5.0)
        assert t.k == 1 and t.controller == 0     # still nr: the refused CONFIG changed nothing
        s = c.stats()
        assert s["frames_bad"] == 3 and s["rejected"] == 2 and s["periods"] == 2
        c.stop()
        # Out-of-range settings are refused as a whole.
        with pytest.raises(DeviceError, match="out of range"):
            c.configure(M.WeightsRequest(q=[-1, 0, 0, 0], tol_step=1e-4))
        with pytest.raises(DeviceError, match="out of range"):
            c.configure(M.LimitsRequest(u_lo=[1, 0, 0, 0], u_hi=[-1, 0, 0, 0]))
        c.exit()


def test_write_csv_columns_for_a_multi_output_plant(msd, tmp_path):
    # The CSV layout does not depend on the board: check it for the tendon's 3 outputs.
    from nnmpc.host.loop import RunLog
    tendon = get_plant("tendon")
    T = 5
    log = RunLog("tendon", "nr", 0.01, (0, 1), ["x", "y", "z"], ["T1", "T2", "T3"],
                 np.zeros((T, 3)), np.zeros((T, 3)), np.zeros((T, 3)), np.ones((T, 3)),
                 np.ones(T), np.zeros(T), np.zeros(T), np.zeros(T), 25_000_000)
    header = open(write_csv(log, tmp_path / "t.csv")).readline().strip().split(",")
    assert header == ["t", "ref_x", "ref_y", "y_x", "y_y", "y_z", "u_T1", "u_T2", "u_T3",
                      "iterations", "status", "residual", "work_us"]
    assert tendon.outputs[0].name == "x"


def test_time_budget_bounds_the_work_per_period_on_a_cortex_m4(msd):
    """The firmware image in the instruction counter, in closed loop, with the SysTick clock
    advanced from the estimated cycles: a tight budget cuts every period short."""
    import sys

    from support import REPO
    sys.path.insert(0, str(REPO / "bench"))
    import mpc_bench

    plant, net, img, _ = msd
    free = mpc_bench.count_loop("msd", "nr", net, img, 30, budget_us=0)
    tight = mpc_bench.count_loop("msd", "nr", net, img, 30, budget_us=300)
    assert free["periods_stopped_by_budget"] == 0
    assert tight["periods_stopped_by_budget"] == 30
    # Past the budget only the first Jacobian rollout runs: no line-search rollout.
    assert tight["cycles_max"] < free["cycles_mean"]
    assert tight["iterations_mean"] == 1.0


def test_nnmpc_run_command_line_writes_csv_png_and_summary(msd, tmp_path, capsys):
    import json

    from nnmpc.host.cli import main

    _, _, _, d = msd
    log = tmp_path / "run.csv"
    rc = main(["run", "--board", "qemu-m4f", "--plant", "msd", "--model", str(d / "model"),
               "--controller", "fd", "--reference", "sine", "--duration", "1.0",
               "--log", str(log), "--work", str(tmp_path / "w"), "--json",
               str(tmp_path / "s.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "msd / fd / sine: 100 periods" in out
    assert log.is_file() and log.with_suffix(".png").is_file()
    assert len(log.read_text().splitlines()) == 101
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["controller"] == "fd" and s["lost_frames"] == 0
    # A reference file: one column per tracked output.
    ref = tmp_path / "ref.csv"
    ref.write_text("x\n" + "\n".join(str(5.0 * (k > 20)) for k in range(60)) + "\n")
    assert main(["run", "--plant", "msd", "--model", str(d / "model"), "--reference",
                 str(ref), "--log", str(tmp_path / "f.csv"), "--work",
                 str(tmp_path / "w")]) == 0
    rows = (tmp_path / "f.csv").read_text().splitlines()
    assert len(rows) == 61 and rows[30].split(",")[1] == "5"
    # A bad reference name is a one-line error, not a traceback.
    assert main(["run", "--plant", "msd", "--model", str(d / "model"), "--reference",
                 "nosuch", "--work", str(tmp_path / "w")]) == 2


@pytest.fixture(scope="module")
def arm2(tmp_path_factory, board):
    """A forward-kinematics net for the 2-link arm (trained briefly) and its firmware."""
    from nnmpc.host.learn.train import train_mlp

    plant = get_plant("arm2")
    d = tmp_path_factory.mktemp("arm2")
    rng = np.random.default_rng(0)
    u = rng.uniform(plant.u_low, plant.u_high, size=(2500, 2))
    y = plant.h(plant.steady_state(u), u)
    res = train_mlp(u[500:].astype(np.float32), y[500:].astype(np.float32),
                    u[:500].astype(np.float32), y[:500].astype(np.float32), hidden=(32, 32),
                    epochs=80, seed=0, patience=15)
    res.model.save(d / "m.keras")
    net = prepare_model(plant, str(d / "m.keras"), d)
    assert (net.kind, net.na, net.nb) == ("fk", 0, 1)
    img = build_firmware(board, net.model_dir, d / "fw")
    return plant, net, img, d


def test_arm_circle_through_the_servo_lag_beats_pid(arm2, tmp_path):
    """The arm starts at rest on the circle's first point; the inversion through the
    identified servo lag follows the circle closer than the tuned PID, from the start."""
    plant, net, img, _ = arm2
    runs = {c: run_on_board("arm2", c, "sine", built=(net, img), duration=3.0,
                            log_path=tmp_path / f"{c}.csv", log=lambda *a: None)
            for c in ("nr", "pid")}
    for r in runs.values():
        _check_run(r, plant)
        assert "first point" in r.summary["start"] and r.summary["units"] == "mm"
    nr, pid = runs["nr"].summary, runs["pid"].summary
    assert nr["path_error_rms"] < 0.7 * pid["path_error_rms"]
    assert nr["path_error_max"] < 1.5          # mm: no start-up transient
    assert np.linalg.norm(runs["nr"].log.y_true[0] - runs["nr"].log.ref[0]) < 0.2
    assert runs["nr"].png.stat().st_size > 30_000   # time series and the x-y path
