"""``nnmpc run --controller pid-ff`` on the emulated board: the PID with feed-forward (and the
preview) tuned on the msd's tuning reference, its feed-forward sent to the device, tracking
the msd's steps better than the plain PID of ``--controller pid``; its settings written with
``--write-config``, run again from the file, and a bad [pid] key refused in one line.

The pid-ff search is made smaller here (coarser grids, fewer previews and leads: seconds
instead of about two minutes); the search itself is tested in tests/test_loopbench.py."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
from nnmpc.host.cli import main
from nnmpc.host.link import protocol_msgs as M
from nnmpc.host.link.client import DeviceClient
from nnmpc.host.loop import pid as PID

pytestmark = pytest.mark.qemu

DURATION = "4.0"     # s: 400 periods at 100 Hz, the msd's steps to 40 mm (at 2 s) and back


def small_search(mp) -> None:
    """A smaller pid-ff search (seconds, not minutes): coarser grids for the PID it starts
    from and for the five gains, the preview fixed at the bench's msd optimum (4), two leads."""
    mp.setattr(PID, "KP_GRID", np.geomspace(1.0, 100.0, 5))
    mp.setattr(PID, "KI_GRID", np.array([1e-3, 0.1]))
    mp.setattr(PID, "KD_GRID", np.geomspace(1.0, 100.0, 3))
    mp.setattr(PID, "FF_GRIDS", (np.geomspace(1.0, 100.0, 3), np.array([1e-3, 0.1]),
                                 np.geomspace(1.0, 100.0, 3), np.array([0.5, 1.0, 2.0]),
                                 np.array([1.0, 10.0])))
    mp.setattr(PID, "FF_POINTS", 3)
    mp.setattr(PID, "SPANS", (2.0,))
    mp.setattr(PID, "TUNED", {**PID.TUNED, "pid-ff": (4,)})
    mp.setattr(PID, "FF_LEADS", (0, 2))


@pytest.fixture(scope="module")
def msd_run(tmp_path_factory):
    """A small untrained NARX net for the msd (the PID uses no net) and a work folder."""
    import keras

    d = tmp_path_factory.mktemp("pid_ff")
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                          keras.layers.Dense(2)])
    m.save(d / "m.keras")
    return d


class Spy:
    """The settings messages the device acknowledged and the trajectory it was given."""

    def __init__(self, mp):
        self.acked, self.uploaded = [], []
        configure, upload = DeviceClient.configure, DeviceClient.upload_trajectory

        def spy_configure(client, msg):
            configure(client, msg)              # raises if the device refuses it
            self.acked.append(msg)

        def spy_upload(client, rows, dt=None):
            self.uploaded.append(np.asarray(rows, float))
            return upload(client, rows, dt)

        mp.setattr(DeviceClient, "configure", spy_configure)
        mp.setattr(DeviceClient, "upload_trajectory", spy_upload)

    def pid(self) -> M.PidRequest:
        (msg,) = [m for m in self.acked if isinstance(m, M.PidRequest)]
        return M.PidRequest.unpack(msg.pack())      # as the bytes the device took


def _run(d, controller, *extra):
    name = controller if not extra else "cfg"
    rc = main(["run", "--plant", "msd", "--model", str(d / "m.keras"), "--controller",
               controller, "--reference", "step", "--duration", DURATION, "--work",
               str(d / "w"), "--log", str(d / f"{name}.csv"), "--json",
               str(d / f"{name}.json"), *extra])
    assert rc == 0
    return json.loads((d / f"{name}.json").read_text())


def test_pid_ff_tracks_the_msd_steps_better_than_pid_with_its_feedforward_on_the_device(
        msd_run, monkeypatch, capsys):
    d = msd_run
    spy = Spy(monkeypatch)
    pid = _run(d, "pid")
    assert spy.pid().kff == [0.0] * 4 and spy.pid().lead == 0
    spy.acked.clear(), spy.uploaded.clear()
    small_search(monkeypatch)    # after the plain PID: its own search is the full one
    ff = _run(d, "pid-ff")
    out = capsys.readouterr().out
    assert "msd / pid-ff / step: 400 periods" in out and "kff" in out
    for s in (pid, ff):
        assert s["periods"] == 400 and s["lost_frames"] == 0
    # The feed-forward the device took: the tuned kff, kdff and lead on the tracked output
    # (the position), y_bias the position at the input bias (at rest at the first step, 0).
    g = ff["pid"]
    msg = spy.pid()
    assert g["kff"] > 0 and msg.kff[0] == pytest.approx(g["kff"], rel=1e-6)
    assert msg.kdff[0] == pytest.approx(g["kdff"], rel=1e-6) and msg.kff[1:] == [0.0] * 3
    assert msg.lead == g["lead"]
    assert msg.y_bias[0] == pytest.approx(0.0, abs=1e-6)
    # The preview: the device was given r[k + P], the run scored on r[k].
    refs = np.loadtxt(d / "pid-ff.csv", delimiter=",", skiprows=1, usecols=1)
    assert g["preview"] >= 1
    (up,) = spy.uploaded
    np.testing.assert_allclose(up[:, 0], PID.preview_reference(refs[:, None], g["preview"])[:, 0])
    # Tuned on the tuning reference (not the scored steps), and still better than the PID
    # tuned on the scored steps themselves (the bench: 4.3 mm against 8.5 mm on 800 periods).
    print(f"\ntracking RMS on the msd steps, {DURATION} s: pid {pid['tracking_rms']:.3f} mm, "
          f"pid-ff {ff['tracking_rms']:.3f} mm (kp {g['kp']:.3g}, ki {g['ki']:.3g}, kd "
          f"{g['kd']:.3g}, kff {g['kff']:.3g}, kdff {g['kdff']:.3g}, P {g['preview']}, "
          f"L {g['lead']})")
    assert ff["tracking_rms"] < 0.8 * pid["tracking_rms"]
    # The tuning is kept: a second run reads it (no search: the same gains).
    assert len(list((d / "w" / "pid").glob("msd-pid-ff-*.json"))) == 1


def test_pid_ff_settings_file_is_written_run_and_checked(msd_run, monkeypatch, capsys):
    d = msd_run
    small_search(monkeypatch)    # the same search as above: its kept result is read
    cfg = d / "ff.toml"
    assert main(["run", "--plant", "msd", "--model", str(d / "m.keras"), "--controller",
                 "pid-ff", "--work", str(d / "w"), "--write-config", str(cfg)]) == 0
    text = cfg.read_text()
    table = tomllib.loads(text)
    assert table["controller"] == "pid-ff"
    assert set(table["pid"]) >= {"kp", "ki", "kd", "u_bias", "mix", "kff", "kdff", "y_bias",
                                 "lead", "preview"}
    # Run from the file: the same gains as the tuned run, the same run.
    s = _run(d, "nr", "--config", str(cfg))
    assert s["controller"] == "pid-ff"
    tuned = d / "pid-ff.json"
    if tuned.is_file():      # the first test ran in this module
        assert s["tracking_rms"] == pytest.approx(json.loads(tuned.read_text())["tracking_rms"],
                                                  rel=1e-6)
    capsys.readouterr()
    # A bad [pid] value or a missing feed-forward key: one line naming it, no run.
    bad = {"kff = ": 'kff = "big"\n', "lead = ": "lead = 2.5\n", "y_bias = ": "y_bias = [1.0, 2.0, 3.0]\n"}
    for key, line in bad.items():
        lines = text.splitlines(keepends=True)
        i = next(i for i, x in enumerate(lines) if x.startswith(key))
        cfg.write_text("".join(lines[:i] + [line] + lines[i + 1:]))
        assert main(["run", "--plant", "msd", "--config", str(cfg), "--work",
                     str(d / "w")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"pid.{key.split()[0]}:" in err, err
    lines = [x for x in text.splitlines(keepends=True) if not x.startswith("kdff = ")]
    cfg.write_text("".join(lines))
    assert main(["run", "--config", str(cfg), "--work", str(d / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pid.kdff: missing" in err, err
