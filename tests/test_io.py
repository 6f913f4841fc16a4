"""On-board sensing (firmware/io): the calibration in C against the Python one, and the
excitation signals `nnmpc collect` plays, built with the host cc under ASan/UBSan."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nnmpc.host.build.channels import Channel, parse_channels, plant_channels
from nnmpc.host.errors import NnmpcError
from nnmpc.host.plants import get_plant
from support import HOST_CFLAGS, REPO

IO = REPO / "firmware" / "io"


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    exe = tmp_path_factory.mktemp("io") / "io"
    subprocess.run([cc, *HOST_CFLAGS, "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    f"-I{IO}", str(IO / "nnmpc_io.c"), str(REPO / "tests" / "io_harness.c"),
                    "-o", str(exe)], check=True)
    return exe


def run(exe: Path, mode: str, text: str) -> np.ndarray:
    out = subprocess.run([str(exe), mode], input=text, capture_output=True, text=True, check=True)
    return np.array([float(v) for v in out.stdout.split()], np.float32)


CHANNELS = [Channel("x", "mm", (0.0, 4095.0), (-60.0, 60.0)),
            Channel("flip", "mm", (4095.0, 0.0), (10.0, -5.0)),   # a sensor wired backwards
            Channel("T", "N", (0.0, 1.0), (0.0, 10.0)),
            Channel("T_inv", "N", (1.0, 0.2), (0.0, 4.0))]        # duty falls as force rises


@pytest.mark.parametrize("ch", CHANNELS, ids=lambda c: c.name)
def test_calibration_in_c_is_bit_exact_with_python(harness, ch):
    raw = np.linspace(min(ch.raw) - 10, max(ch.raw) + 10, 257).astype(np.float32)
    units = np.linspace(min(ch.units) - 3, max(ch.units) + 3, 257).astype(np.float32)
    head = " ".join(repr(float(v)) for v in (*ch.raw, *ch.units)) + "\n"
    got_u = run(harness, "units", head + "\n".join(repr(float(v)) for v in raw))
    got_r = run(harness, "raw", head + "\n".join(repr(float(v)) for v in units))
    np.testing.assert_array_equal(got_u, ch.to_units(raw))
    np.testing.assert_array_equal(got_r, ch.to_raw(units))
    # commands outside the physical range are clamped to the raw range (never past full duty)
    assert got_r.min() >= min(ch.raw) and got_r.max() <= max(ch.raw)
    # the two directions invert each other inside the range
    inside = units[(units >= min(ch.units)) & (units <= max(ch.units))]
    np.testing.assert_allclose(ch.to_units(ch.to_raw(inside)), inside, atol=1e-4)


def test_nan_command_drives_the_rest_value(harness):
    got = run(harness, "raw", "0 1 0 10\nnan\n")
    assert got[0] == 0.0


def excite(exe, kind, n=4000, hold=25, seed=3, periods=4000, f_lo=0.1, f_hi=5.0, dt=0.01, ch=0):
    return run(exe, "excite", f"{kind} {hold} {seed} {periods} {f_lo} {f_hi} {dt} {n} {ch}")


def test_steps_hold_random_levels_for_hold_periods(harness):
    v = excite(harness, 0)
    levels = v.reshape(-1, 25)
    assert np.all(levels == levels[:, :1])                  # constant within each hold
    assert np.all(np.abs(v) <= 1) and len(np.unique(levels[:, 0])) == len(levels)
    assert abs(levels[:, 0].mean()) < 0.15 and levels[:, 0].std() > 0.45  # ~uniform in [-1, 1]


def test_prbs_switches_between_plus_and_minus_one_with_bounded_holds(harness):
    v = excite(harness, 3, hold=10)
    assert set(np.unique(v)) == {-1.0, 1.0}
    runs = np.diff(np.flatnonzero(np.diff(v) != 0))
    assert runs.min() >= 1 and abs(v.mean()) < 0.2


def test_multisine_power_sits_in_its_band_and_channels_differ(harness):
    v0, v1 = excite(harness, 2, ch=0), excite(harness, 2, ch=1)
    assert np.all(np.abs(v0) <= 1) and 0.25 < v0.std() < 0.6
    f = np.fft.rfftfreq(len(v0), 0.01)
    P = np.abs(np.fft.rfft(v0)) ** 2
    band = (f >= 0.09) & (f <= 5.1)
    assert P[band].sum() > 0.97 * P[1:].sum()
    assert abs(np.corrcoef(v0, v1)[0, 1]) < 0.3


def test_chirp_sweeps_from_f_lo_to_f_hi(harness):
    v = excite(harness, 1, f_lo=0.2, f_hi=4.0)
    t = np.arange(len(v)) * 0.01
    ref = np.sin(2 * np.pi * (0.2 * t + 0.5 * 3.8 * t ** 2 / 40.0))
    np.testing.assert_allclose(v, ref, atol=2e-3)   # the libm-free sine within 2e-3 over 40 s


def test_board_file_channels_are_checked_with_one_line():
    ok = {"sensor": [{"name": "x", "unit": "mm", "pin": "A0", "raw": [0, 4095], "units": [-60, 60]}],
          "actuator": [{"name": "T1", "unit": "N", "pin": "5", "raw": [0, 1], "units": [0, 10]}]}
    s, a = parse_channels(ok, "b.toml")
    assert s[0].pin == "A0" and a[0].units == (0.0, 10.0)
    for bad, msg in (({"sensor": [{"name": "x", "raw": [0, 1]}]}, "missing field 'units'"),
                     ({"sensor": [{"name": "x", "raw": [1, 1], "units": [0, 1]}]}, "two different"),
                     ({"actuator": [{"name": "T", "raw": [0, 255], "units": [0, 1]}]}, "within [0, 1]"),
                     ({"sensor": [ok["sensor"][0], ok["sensor"][0]]}, "appears twice")):
        with pytest.raises(NnmpcError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            parse_channels(bad, "b.toml")


def test_stand_in_rig_channels_cover_each_signal_range():
    s, a = plant_channels(get_plant("tendon"))
    assert [c.name for c in s] == ["x", "y", "z"] and [c.name for c in a] == ["T1", "T2", "T3"]
    assert s[0].to_units(0.0) == -80.0 and s[0].to_units(65535.0) == 80.0
    assert a[0].to_raw(10.0) == 1.0 and a[0].to_raw(20.0) == 1.0
