"""The closed-loop bench (``nnmpc bench --loop``, host/bench/loopbench.py): the committed
figures still hold, the report is generated from the committed rows (with the PID with
feed-forward and the estimator's rows), the PID's grids have no optimum on an edge, and the
bench's references (preview, no preview) mean what they say."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from support import REPO, have

from nnmpc.host.bench import loopbench as LB
from nnmpc.host.loop import pid as PID
from nnmpc.host.plants import get_plant

pytestmark = pytest.mark.skipif(not have("arm-none-eabi-gcc"), reason="needs arm-none-eabi-gcc")

#: Tolerances of the re-run against the committed JSON. The loop is deterministic (same
#: image, same plant, same noise seed), so a change beyond these is a changed figure: the
#: firmware, the solver, the PID law or its tuning, the plant or the counter's cost table.
RMS_REL = 0.02       # tracking RMS of the first LB.PREFIX periods
CYCLES_REL = 0.03    # worst period, estimated cycles (a different compiler release moves it)


def _committed_row(plant, net, controller, reference):
    rows, _ = LB.read()
    return next(r for r in rows if (r["plant"], r["net"], r["controller"], r["reference"])
                == (plant, net, controller, reference))


def test_the_report_is_generated_from_the_committed_rows():
    rows, meta = LB.read()
    assert (REPO / "bench" / "mpc_results.md").read_text() == LB.markdown(rows, meta)
    keys = {"plant", "net", "controller", "reference", "estimator", "rate_hz", "periods",
            "stopped", "cycles_max", "rms", "path_error_rms", "spread", "seeds"}
    for r in rows:
        assert keys <= set(r), r
        assert r["estimator"] in (False, True)
        if r["estimator"]:
            assert (r["plant"], r["net"], r["controller"]) == ("msd", "narx", "nr")
        assert r["seeds"] == list(LB.SEEDS)
        assert len(r["per_seed"]["rms"]) == len(LB.SEEDS)
        assert r["rms"] == pytest.approx(float(np.median(r["per_seed"]["rms"])), abs=1e-4)
        assert r["spread"] == pytest.approx(np.ptp(r["per_seed"]["rms"]), abs=2e-4)
        assert (r["path_error_rms"] is None) == (r["plant"] in ("msd", "hasel"))
        assert (r["budget_us"] == 0) == (r["controller"] in ("nr-nobudget", "fd") + LB.PIDS)
        if r["controller"] == "pid-ff":
            assert r["lead"] >= 0 and r["preview"] >= 0
    # nr with the extended Kalman filter: the msd's step and sine, beside nr without it.
    assert sorted(r["reference"] for r in ekf_rows(rows)) == ["sine", "step"]
    # Every plant and reference with a PID has the three, and the report weighs nr against
    # the best of them, saying so where nr does not reach 0.6x.
    for r in rows:
        if r["controller"] == "pid":
            assert {q["controller"] for q in rows if (q["plant"], q["net"], q["reference"])
                    == (r["plant"], r["net"], r["reference"])} >= set(LB.PIDS)
    md = LB.markdown(rows, meta)
    assert "No state estimation" not in md and "+ EKF" in md
    for t in LB.targets(rows):
        if "0.6x the best PID" in t["target"]:
            assert "pid-ff" in t["target"]
    for line in md.split("## nr against the best PID")[1].split("##")[0].splitlines():
        if line.startswith("- "):
            x = float(line.split("x, ")[0].rsplit(" ", 1)[1])
            assert ("does not reach 0.6x" in line) == (0.6 < x < 1), line


def ekf_rows(rows):
    return [r for r in rows if r["estimator"]]


@pytest.fixture(scope="module")
def msd_image(tmp_path_factory):
    """A small untrained NARX net for the msd with the bench's lags (the PID does not call
    it: its periods cost the same with any net of these sizes)."""
    import keras

    from nnmpc.host.build.boards import load_board
    from nnmpc.host.build.firmware import build_firmware
    from nnmpc.host.loop import prepare_model

    d = tmp_path_factory.mktemp("msd_pid")
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                          keras.layers.Dense(2)])
    m.save(d / "m.keras")
    net = prepare_model(get_plant("msd"), str(d / "m.keras"), d)
    assert (net.kind, net.na, net.nb) == ("narx", 1, 1)
    return net, build_firmware(load_board("qemu-m4f"), net.model_dir, d / "fw")


def _short_form(image, controller, reference, net, img, seed=0):
    plant, kind, rate, _ = LB.IMAGES[image]
    job = {"image": image, "plant": plant, "net": kind, "reference": reference,
           "controller": controller, "seed": seed, "rate_hz": rate,
           "budget_us": LB.budget_us(rate), "periods": None, "run_periods": LB.PREFIX,
           "pid": LB.tune_pids(plant, (controller,))[controller]
           if controller.startswith("pid") else None}
    LB._BUILT[(image, seed, False)] = (net, img)
    return LB._run(job)["result"]


def test_the_committed_pid_figures_still_hold(msd_image):
    """msd, PID, step reference, seed 0, the first LB.PREFIX periods, against the committed
    JSON: RMS within RMS_REL, worst period within CYCLES_REL."""
    got = _short_form("msd", "pid", "step", *msd_image)
    ref = _committed_row("msd", "narx", "pid", "step")["per_seed"]["prefix"][0]
    assert got["periods"] == ref["periods"] == LB.PREFIX
    assert got["tracking_rms"] == pytest.approx(ref["rms"], rel=RMS_REL)
    assert got["cycles_max"] == pytest.approx(ref["cycles_max"], rel=CYCLES_REL)
    assert got["periods_stopped_by_budget"] == ref["stopped"] == 0


@pytest.mark.slow
def test_the_committed_newton_mpc_figures_still_hold():
    """msd, nr, step reference, seed 0 (the bench's net, trained if it is not cached), the
    first LB.PREFIX periods with the 1 kHz budget, against the committed JSON."""
    net, img = LB.build_image("msd", "narx", 0, REPO / "build" / "run", log=lambda *a: None)
    got = _short_form("msd", "nr", "step", net, img)
    ref = _committed_row("msd", "narx", "nr", "step")["per_seed"]["prefix"][0]
    assert got["tracking_rms"] == pytest.approx(ref["rms"], rel=RMS_REL)
    assert got["cycles_max"] == pytest.approx(ref["cycles_max"], rel=CYCLES_REL)
    assert got["periods_stopped_by_budget"] == ref["stopped"]


def test_pid_grid_optimum_is_not_on_an_edge_and_edges_are_extended():
    plant = get_plant("msd")
    tref = PID.tuning_reference(plant)
    g = PID.tune_pid(plant, tref[:300], previews=(0,))
    assert g["on_edge"] == []
    gr = g["grid"]
    for name in ("kp", "ki", "kd"):
        assert g[name] < gr[name][1]
    assert g["kp"] > gr["kp"][0]
    # The edge test itself: the best at the top of kp's range, or of ki's, is an edge; 0 is
    # not (no integral action is a choice, not a limit of the grid).
    axes = [PID.KP_GRID, PID._axis(PID.KI_GRID, True), PID._axis(PID.KD_GRID, True)]
    assert PID._edges(axes, (100.0, 0.0, 0.0)) == ["kp"]
    assert PID._edges(axes, (1.0, 10.0, 0.0)) == ["ki"]
    assert PID._edges(axes, (0.01, 0.0, 0.0)) == ["kp"]
    assert PID._edges(axes, (1.0, 0.0, 1.0)) == []


def test_pid_ff_grid_optimum_is_not_on_an_edge_and_previews_and_leads_are_extended(monkeypatch):
    """The PID with feed-forward's search (on a short piece of the msd's tuning reference, a
    smaller first grid and finer grids of three values, to keep it short), from preview and
    lead sets that stop at 1: the msd's best preview is larger (about 4), so the previews are
    extended past 1; the best is inside the range of every gain, preview and lead; and the
    five-gain law does at least as well as the PID with the same previews (a special case of
    it) and beats the PID without them."""
    monkeypatch.setattr(PID, "FF_GRIDS", (np.geomspace(0.1, 100.0, 4), np.array([1e-3, 0.1]),
                                          np.array([1.0, 100.0]), np.array([0.5, 1.0, 2.0]),
                                          np.array([1.0, 100.0])))
    monkeypatch.setattr(PID, "FF_POINTS", 3)
    monkeypatch.setattr(PID, "SPANS", (2.0, 1.4))
    plant = get_plant("msd")
    tref = PID.tuning_reference(plant)[:200]
    g = PID.tune_pid(plant, tref, previews=(0, 1), leads=(0, 1), feedforward=True)
    assert g["on_edge"] == []
    gr = g["grid"]
    for name in PID.FF_GAINS:
        assert g[name] < gr[name][1]
    assert g["kp"] > gr["kp"][0]
    assert gr["preview_extensions"] >= 1 and g["preview"] > 1
    assert g["preview"] < gr["preview"][1] and (g["lead"] < gr["lead"][1] or g["lead"] == 0)
    assert len(g["y_bias"]) == len(plant.outputs)
    plain = PID.tune_pid(plant, tref, previews=(0,))
    assert g["model_rms"] < plain["model_rms"]
    # The PID with preview is a special case, and the search starts from its optimum too.
    assert g["model_rms"] <= PID.tune_pid(plant, tref, previews=(0, 1))["model_rms"]
    # The feed-forward earns its place: the same feedback gains without it track worse.
    G = np.array([[g["kp"], g["ki"], g["kd"], 0.0, 0.0]])
    zero = PID.simulate_pid(plant, tref, G, g["u_bias"], g["mix"], (0,), 1, g["preview"],
                            lead=g["lead"], y_bias=g["y_bias"])
    assert g["model_rms"] <= zero[0] + 1e-12


def test_the_pid_message_carries_the_feedforward_of_the_tracked_outputs():
    from nnmpc.host.bench.loopcount import _with_feedforward
    from nnmpc.host.link import protocol_msgs as M

    msg = _with_feedforward(M.PidRequest(), {"kff": 0.9, "kdff": 12.0, "lead": 3,
                                             "y_bias": [-5.0, 0.0, 1.0]}, (0, 2))
    assert msg.kff == [pytest.approx(0.9), 0.0, pytest.approx(0.9), 0.0]
    assert msg.kdff == [12.0, 0.0, 12.0, 0.0]
    assert msg.y_bias == [-5.0, 0.0, 1.0, 0.0] and msg.lead == 3
    assert M.PidRequest.unpack(msg.pack()).lead == 3


def test_pid_ff_runs_on_the_device_and_its_feedforward_acts(msd_image):
    """pid-ff in the instruction counter (msd, step, seed 0, the first 260 periods: the
    first step is at 200): the device takes the PID message with the feed-forward, no period
    is stopped, a period costs about what the PID's does, and with these gains the
    feed-forward lowers the RMS against the same gains without it."""
    g = {"kp": 20.0, "ki": 0.0, "kd": 60.0, "preview": 2, "kff": 1.0, "kdff": 5.0, "lead": 2}
    net, img = msd_image
    LB._BUILT[("msd", 0, False)] = (net, img)
    job = {"image": "msd", "plant": "msd", "net": "narx", "reference": "step",
           "controller": "pid-ff", "seed": 0, "rate_hz": 1000, "budget_us": LB.budget_us(1000),
           "periods": None, "run_periods": 260, "pid": g}
    ff = LB._run(job)["result"]
    plain = LB._run({**job, "controller": "pid-preview",
                     "pid": {k: g[k] for k in ("kp", "ki", "kd", "preview")}})["result"]
    assert ff["periods"] == plain["periods"] == 260
    assert ff["periods_stopped_by_budget"] == 0
    assert ff["cycles_max"] == pytest.approx(plain["cycles_max"], rel=0.05)
    assert ff["tracking_rms"] < plain["tracking_rms"]


def test_tuning_reference_is_neither_scored_reference():
    from nnmpc.host.loop import reference

    for name in ("msd", "tendon", "arm2", "hasel"):
        plant = get_plant(name)
        t = PID.tuning_reference(plant)
        for kind in ("step", "sine"):
            r = reference(plant, kind)
            assert t.shape == r.shape
            assert np.abs(t - r).max() > 0.1 * np.abs(r).max()


def test_preview_reference_shifts_and_holds_the_last_point():
    r = np.arange(6.0)[:, None]
    assert PID.preview_reference(r, 0) is not None
    np.testing.assert_array_equal(PID.preview_reference(r, 2)[:, 0], [2, 3, 4, 5, 5, 5])
    np.testing.assert_array_equal(PID.preview_reference(r, 0)[:, 0], r[:, 0])


def test_budget_of_a_rate_leaves_the_frames_their_time():
    assert LB.budget_us(1000) == 1000 - LB.IO_US
    assert LB.budget_us(2000) == 500 - LB.IO_US
    assert all(LB.budget_us(r) * 168 + LB.IO_US * 168 == 168_000_000 // r
               for r in (1000, 2000))


def test_bench_loop_command_refuses_an_unknown_controller():
    p = subprocess.run([sys.executable, "-m", "nnmpc.host.cli", "bench", "--loop",
                        "--controller", "lqr"], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2
    assert "unknown controller 'lqr'" in p.stderr
