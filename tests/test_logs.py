"""Logs: collect and run logs as CSV and MCAP, `nnmpc train --data` (its errors, its split,
the error it reaches), `nnmpc plot` and the monitor's columns (docs/LOGS.md,
docs/TRAINING.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnmpc.host.cli import main
from nnmpc.host.errors import NnmpcError
from nnmpc.host.learn.datasets import multisine, series_dataset, split_segments
from nnmpc.host.learn.logs import LogTable, read_log, write_log_table
from nnmpc.host.loop.logs import load_log, load_run, write_log, write_mcap
from nnmpc.host.loop.runlog import RunLog, read_csv, write_csv
from nnmpc.host.plants import get_plant

PNG = b"\x89PNG\r\n\x1a\n"


def tendon_log(seconds: float = 60.0, seed: int = 0) -> LogTable:
    """A collect log as `nnmpc collect` would record it: the tendon segment driven by a
    multisine inside its limits at its own sample period, noisy measurements, the noise-free
    outputs and the period index as extra columns."""
    p = get_plant("tendon")
    rng = np.random.default_rng(seed)
    n = int(round(seconds / p.dt))
    u = p.clip(multisine(p, n, rng))
    xs, ys = p.simulate(u, rng=rng)
    units = {f"u_{s.name}": s.unit for s in p.inputs}
    units.update({f"y_{s.name}": s.unit for s in p.outputs})
    extra = {f"ytrue_{s.name}": p.h(xs[:-1], u)[:, j] for j, s in enumerate(p.outputs)}
    extra["k"] = np.arange(n)
    return LogTable.from_signals(np.arange(n) * p.dt, u, ys[:-1], [s.name for s in p.inputs],
                                 [s.name for s in p.outputs],
                                 meta={"plant": "tendon", "dt": p.dt, "units": units},
                                 extra=extra)


@pytest.fixture(scope="module")
def collect_csv(tmp_path_factory) -> Path:
    return write_log_table(tendon_log(), tmp_path_factory.mktemp("log") / "tendon_log.csv")


def fake_run(T: int = 200, plant: str = "tendon") -> RunLog:
    rng = np.random.default_rng(3)
    t = np.arange(T) * 0.01
    ref = np.stack([20 * np.cos(t), 20 * np.sin(t), np.full(T, 95.0)], axis=1)
    y_true = ref + rng.normal(0, 0.3, ref.shape)
    y = y_true + rng.normal(0, 0.2, ref.shape)
    u = 5 + rng.normal(0, 1, (T, 3))
    status = np.zeros(T, int)
    status[50:53], status[120] = 1, 2
    residual = rng.random(T)
    residual[120] = np.nan  # a non-finite residual survives the round trip as NaN
    return RunLog(plant, "nr", 0.01, (0, 1), ["x", "y", "z"], ["T1", "T2", "T3"], ref, y,
                  y_true, u, rng.integers(1, 5, T), status, residual,
                  rng.integers(1000, 9000, T).astype(float), 25_000_000,
                  output_units=["mm"] * 3, input_units=["N"] * 3, extra={"start": "at rest"})


# -- train --data: bad data is one line, nothing written -----------------------------------------
def small_log(tmp_path: Path, edit=None, rows: int = 300, name: str = "LOG.csv") -> Path:
    """A 300-row tendon collect log; ``edit(lines)`` changes the file's lines (lines[0] is
    the metadata comment = file row 1, lines[1] the header = row 2, lines[i] = row i + 1)."""
    path = write_log_table(tendon_log(rows * 0.01), tmp_path / name)
    if edit is not None:
        lines = path.read_text().splitlines()
        edit(lines)
        path.write_text("\n".join(lines) + "\n")
    return path


def set_cell(row: int, column: str, value: str):
    def edit(lines):
        header = lines[1].split(",")
        cells = lines[row - 1].split(",")
        cells[header.index(column)] = value
        lines[row - 1] = ",".join(cells)
    return edit


def swap_t(row: int):
    def edit(lines):
        a, b = lines[row - 2].split(","), lines[row - 1].split(",")
        a[0], b[0] = b[0], a[0]
        lines[row - 2], lines[row - 1] = ",".join(a), ",".join(b)
    return edit


COLUMNS = "t, u_T1, u_T2, u_T3, y_x, y_y, y_z, ytrue_x, ytrue_y, ytrue_z, k"
BAD = {
    "non-numeric": (set_cell(17, "y_x", "abc"), [],
                    "{p}: row 17, column y_x: 'abc' is not a number"),
    "missing": (set_cell(40, "u_T2", ""), [],
                "{p}: row 40, column u_T2: missing value (empty field)"),
    "not finite": (set_cell(41, "y_z", "nan"), [],
                   "{p}: row 41, column y_z: 'nan' is not a finite number"),
    "t backwards": (swap_t(25), [],
                    "{p}: row 25: t = 0.21 s does not come after t = 0.22 s of the row before "
                    "(t must increase)"),
    "t not a number": (set_cell(9, "t", "0.0x"), [], "{p}: row 9, column t: '0.0x' is not a number"),
    "short row": (lambda lines: lines.__setitem__(30, lines[30].rsplit(",", 2)[0]), [],
                  "{p}: row 31: 9 fields, the header has 11"),
    "column not found": (None, ["--outputs", "y_x,y_q"],
                         "{p}: --outputs 'y_q' matches no column (it has: " + COLUMNS + ")"),
    "glob matches nothing": (None, ["--inputs", "cmd_*"],
                             "{p}: --inputs 'cmd_*' matches no column (it has: " + COLUMNS + ")"),
    "too few rows for the lags": (lambda lines: lines.__delitem__(slice(51, None)),
                                  ["--kind", "narx", "--lags", "3,3"],
                                  "{p}: 49 rows are too few for lags 3,3: the validation split "
                                  "cuts the log into 10 contiguous segments of at least 5 rows, "
                                  "so it needs at least 50"),
    "bad metadata": (lambda lines: lines.__setitem__(0, '# {"plant": tendon}'), [],
                     "{p}: row 1: the metadata comment is not valid JSON (Expecting value at "
                     "column 13)"),
    "dyn": (None, ["--kind", "dyn"],
            "--kind dyn needs the plant's states, which a log does not have: use --kind narx "
            "(y[k+1] from lagged y and u; --lags 1,1 is the one-step form)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_log_is_one_line_naming_file_row_and_column_and_nothing_is_written(
        case, tmp_path, capsys):
    edit, extra, expected = BAD[case]
    path = small_log(tmp_path, edit)
    out = tmp_path / "models"
    capsys.readouterr()
    rc = main(["train", "--data", str(path), "--out", str(out), "--epochs", "1", *extra])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2
    assert err == ["nnmpc: error: " + expected.format(p=path)]
    assert not out.exists()


def test_lags_that_just_fit_are_accepted(tmp_path):
    # The boundary of the "too few rows" case (49 rows): 50 rows (file rows 3..52) fit
    # lags 3,3, 10 segments of 5 rows.
    tab = read_log(small_log(tmp_path, lambda lines: lines.__delitem__(slice(52, None))))
    ds = series_dataset("narx", tab.matrix(["u_T1"]), tab.matrix(["y_x"]), [("T1", "N")],
                        [("x", "mm")], lags=(3, 3))
    assert len(ds.x_train) == 8 * 2 and len(ds.x_val) == 2 * 2   # 2 windows per segment


def test_the_real_command_line_prints_one_error_line_and_exits_2(tmp_path):
    path = small_log(tmp_path, set_cell(17, "y_x", "abc"))
    r = subprocess.run([sys.executable, "-m", "nnmpc.host.cli", "train", "--data", str(path),
                        "--out", str(tmp_path / "m")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("nnmpc: error:")]
    assert errors == [f"nnmpc: error: {path}: row 17, column y_x: 'abc' is not a number"]
    assert "Traceback" not in r.stderr and not (tmp_path / "m").exists()


def test_plant_and_data_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--plant", "tendon", "--data", str(small_log(tmp_path))])
    assert e.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# -- the split ----------------------------------------------------------------------------------
def test_validation_is_contiguous_segments_and_narx_windows_never_straddle_them():
    T = 1003                                   # 10 segments of 100, 3 rows dropped
    k = np.arange(T, dtype=float)
    u, y = np.stack([k, -k], 1), (k + 0.5)[:, None]
    is_val, L = split_segments(T)
    assert L == 100 and list(np.flatnonzero(is_val)) == [4, 9]
    ds = series_dataset("narx", u, y, [("a", ""), ("b", "")], [("y", "")], lags=(3, 2))
    # features [y[k], y[k-1], y[k-2], a[k], b[k], a[k-1], b[k-1]] -> y[k+1]
    assert ds.x_train.shape == (8 * 97, 7) and ds.x_val.shape == (2 * 97, 7)
    for x, tgt, segs in ((ds.x_train, ds.y_train, (0, 1, 2, 3, 5, 6, 7, 8)),
                         (ds.x_val, ds.y_val, (4, 9))):
        row = x[:, 3]                                         # a[k] = k
        seg = row // L
        assert set(seg.astype(int).tolist()) == set(segs)
        oldest = x[:, 2] - 0.5                                # y[k-2]
        assert np.all(oldest // L == seg)                     # the window's oldest row
        assert np.all((tgt[:, 0] - 0.5) // L == seg)          # and its target
        assert np.array_equal(tgt[:, 0] - 0.5, row + 1)
    assert ds.meta["split"] == {"segments": 10, "segment_rows": 100,
                                "validation_segments": [4, 9], "dropped_rows": 3}
    fk = series_dataset("fk", u, y, [("a", ""), ("b", "")], [("y", "")])
    assert len(fk.x_val) == 200 and len(fk.x_train) == 800
    assert np.array_equal(fk.x_val[:, 0], np.r_[400:500, 900:1000])
    assert np.array_equal(fk.y_train[:, 0], fk.x_train[:, 0] + 0.5)   # u[k] with y[k]


# -- train --data reaches what the simulation path reaches --------------------------------------
EPOCHS = 25


@pytest.mark.slow
def test_train_data_on_a_tendon_log_matches_the_simulated_plant_path(collect_csv, tmp_path,
                                                                     capsys):
    from nnmpc.host.learn.datasets import make_dataset
    from nnmpc.host.learn.train import train_mlp

    out = tmp_path / "models"
    rc = main(["train", "--data", str(collect_csv), "--kind", "narx", "--hidden", "16,16",
               "--epochs", str(EPOCHS), "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "reading" in text and "6000 rows" in text
    meta = json.loads((out / "tendon_narx.json").read_text())
    names = {p.name for p in out.iterdir()}
    assert names == {f"tendon_narx{s}" for s in (".keras", ".tflite", "_int8.tflite", ".onnx",
                                                 ".json", ".png")}
    assert (out / "tendon_narx.png").read_bytes()[:8] == PNG
    assert meta["model_inputs"][0] == {"name": "x[k]", "unit": "mm", "low": -80.0,
                                       "high": 80.0}
    assert meta["source"]["inputs"] == ["u_T1", "u_T2", "u_T3"]
    assert meta["training"]["split"]["validation_segments"] == [4, 9]
    log_rmse = np.array(meta["validation"]["rmse"])
    # The same net on the same number of simulated samples (the --plant path's data set).
    p = get_plant("tendon")
    ds = make_dataset(p, "narx", 6000, seed=0, lags=(2, 2))
    res = train_mlp(ds.x_train, ds.y_train, ds.x_val, ds.y_val, hidden=(16, 16),
                    epochs=EPOCHS, seed=0, skip=True)
    print("log RMSE", log_rmse, "plant RMSE", res.val_rmse)
    assert np.all(log_rmse <= 1.5 * res.val_rmse), (log_rmse, res.val_rmse)
    # and near the sensor noise (sd 0.2 mm): a net that learnt nothing is at ~15 mm
    assert np.all(log_rmse < 0.4), log_rmse
    assert np.all(np.array(meta["validation"]["free_run_rmse"]) < 1.5)


@pytest.mark.slow
def test_train_data_from_mcap_with_selected_columns(collect_csv, tmp_path, capsys):
    # The MCAP copy of the log trains like the CSV; --outputs picks a subset by glob and
    # name; the files are named after the plant in the metadata.
    mcap = write_log_table(read_log(collect_csv), tmp_path / "rig.mcap")
    out = tmp_path / "m"
    rc = main(["train", "--data", str(mcap), "--kind", "narx", "--outputs", "y_[xy]",
               "--hidden", "16", "--epochs", "15", "--out", str(out)])
    assert rc == 0
    meta = json.loads((out / "tendon_narx.json").read_text())
    assert [o["name"] for o in meta["model_outputs"]] == ["x[k+1]", "y[k+1]"]
    assert np.all(np.array(meta["validation"]["rmse"]) < 0.5)


def test_a_log_without_a_known_plant_takes_names_from_columns_and_limits_from_data(tmp_path):
    from nnmpc.host.learn.pipeline import TrainOptions, train_plant

    rng = np.random.default_rng(0)
    n = 400
    u = np.clip(np.cumsum(rng.normal(0, 0.2, n)), -2, 2)
    y = np.zeros(n)
    for k in range(1, n):
        y[k] = 0.8 * y[k - 1] + 0.4 * u[k - 1]
    path = tmp_path / "rig 7.csv"
    path.write_text("t,u_valve,y_level\n" + "".join(
        f"{0.05 * k:.2f},{u[k]:.6f},{y[k]:.6f}\n" for k in range(n)))
    r = train_plant(TrainOptions(data=path, out=tmp_path / "m", hidden=(4,), epochs=3))
    assert r.plant == "rig_7" and r.kind == "narx"   # no plant: narx, named after the file
    meta = json.loads((tmp_path / "m" / "rig_7_narx.json").read_text())
    assert meta["dt_s"] == pytest.approx(0.05)
    assert meta["inputs"] == [{"name": "valve", "unit": "", "low": float(u.min().round(6)),
                               "high": float(u.max().round(6))}]
    assert meta["limits_from"] == "data range"


# -- MCAP ---------------------------------------------------------------------------------------
def test_mcap_round_trip_of_a_run_log_with_channels_and_schemas_as_documented(tmp_path):
    from mcap.reader import make_reader

    log = fake_run()
    path = write_mcap(log, tmp_path / "run.mcap")
    back = load_run(path)
    for a in ("ref", "y", "y_true", "u", "residual"):
        want, got = getattr(log, a), getattr(back, a)
        if a == "ref":
            want, got = want[:, :2], got[:, :2]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.nanmax(np.abs(want)))
    assert np.isnan(back.residual[120]) and np.isnan(back.ref[:, 2]).all()
    assert np.array_equal(back.iterations, log.iterations)
    assert np.array_equal(back.status, log.status)
    np.testing.assert_allclose(back.work / back.clock_hz, log.work / log.clock_hz, rtol=1e-9)
    np.testing.assert_allclose(back.t, log.t, atol=1e-9)
    assert (back.plant, back.controller, back.tracked, back.dt) == ("tendon", "nr", (0, 1), 0.01)
    assert back.output_units == ["mm"] * 3 and back.input_units == ["N"] * 3
    assert back.rms() == pytest.approx(log.rms(), rel=1e-6)

    with open(path, "rb") as fh:
        r = make_reader(fh)
        s = r.get_summary()
        chans = {c.topic: c for c in s.channels.values()}
        assert set(chans) == {"/reference", "/output", "/output_true", "/input", "/solver"}
        for topic, title in (("/reference", "nnmpc.Reference"), ("/output", "nnmpc.Output"),
                             ("/output_true", "nnmpc.OutputTrue"), ("/input", "nnmpc.Input"),
                             ("/solver", "nnmpc.Solver")):
            sch = s.schemas[chans[topic].schema_id]
            assert chans[topic].message_encoding == "json"
            assert (sch.name, sch.encoding) == (title, "jsonschema")
        props = json.loads(s.schemas[chans["/output"].schema_id].data)["properties"]
        assert props == {n: {"type": "number", "description": "mm"} for n in "xyz"}
        solver = json.loads(s.schemas[chans["/solver"].schema_id].data)["properties"]
        assert list(solver) == ["iterations", "status", "residual", "work_us"]
        assert solver["status"]["type"] == "integer"
        assert s.statistics.message_count == 5 * 200
        meta = {m.name: m.metadata for m in r.iter_metadata()}
        assert json.loads(meta["nnmpc"]["meta"])["controller"] == "nr"
        first = next(iter(r.iter_messages(topics=["/input"])))
        assert first[2].log_time == 0 and set(json.loads(first[2].data)) == {"T1", "T2", "T3"}


def test_mcap_round_trip_of_a_collect_log_keeps_every_column(collect_csv, tmp_path):
    tab = read_log(collect_csv)
    back = load_log(write_log(tab, tmp_path / "c.mcap"))
    assert isinstance(back, LogTable) and back.names == tab.names
    assert back.meta["plant"] == "tendon" and back.unit("y_x") == "mm"
    for c in tab.names:
        np.testing.assert_array_equal(back.column(c).astype(np.float32),
                                      tab.column(c).astype(np.float32))
    with pytest.raises(NnmpcError, match="not a run log"):
        load_run(tmp_path / "c.mcap")


def test_run_csv_reads_back_into_a_runlog(tmp_path):
    log = fake_run()
    back = read_csv(write_csv(log, tmp_path / "tendon_nr.csv"))
    np.testing.assert_allclose(back.y, log.y, rtol=1e-5)
    np.testing.assert_allclose(back.u, log.u, rtol=1e-5)
    np.testing.assert_allclose(back.ref[:, :2], log.ref[:, :2], rtol=1e-5, atol=1e-4)
    assert back.tracked == (0, 1) and back.output_names == ["x", "y", "z"]
    assert back.plant == "tendon" and back.output_units == ["mm"] * 3  # from the file name
    assert np.array_equal(back.status, log.status) and back.dt == pytest.approx(0.01)
    assert "y_true" in back.extra                  # no ytrue_ columns: measured stands in


# -- nnmpc plot ---------------------------------------------------------------------------------
def test_nnmpc_plot_draws_run_and_collect_logs(collect_csv, tmp_path, capsys):
    run_csv = write_csv(fake_run(), tmp_path / "run.csv")
    assert main(["plot", str(run_csv)]) == 0
    png = tmp_path / "run.png"
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 30_000
    out = tmp_path / "collect.png"
    assert main(["plot", str(collect_csv), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 30_000
    assert capsys.readouterr().out.split() == ["wrote", str(png), "wrote", str(out)]
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.strip() == f"nnmpc: error: {tmp_path / 'missing.csv'}: no such file"


# -- monitor ------------------------------------------------------------------------------------
class FakePort:
    def __init__(self, data: bytes) -> None:
        self.buf = bytearray(data)

    @property
    def in_waiting(self) -> int:
        return len(self.buf)

    def read(self, n: int) -> bytes:
        d = bytes(self.buf[:n])
        del self.buf[:n]
        return d


def telemetry(ks, p=3, m=3) -> bytes:
    from nnmpc.host.link import protocol as P
    from nnmpc.host.link import protocol_msgs as M

    return b"".join(P.encode_frame(P.TELEMETRY, k % 256, M.Telemetry(
        k=k, work=2500 * k, residual=0.5, iterations=2, status=int(k == 7), p=p, m=m,
        values=[float(k + i) for i in range(2 * p + m)]).pack()) for k in ks)


def test_monitor_writes_named_columns_with_t_and_an_mcap_log(tmp_path):
    from nnmpc.host.loop.monitor import Columns, monitor

    cols = Columns.for_plant(get_plant("tendon"), period_s=0.002)
    st = monitor(FakePort(telemetry([5, 6, 7, 9, 3])), tmp_path / "m.csv", max_frames=5,
                 duration=5.0, clock_hz=25_000_000, columns=cols, mcap=tmp_path / "m.mcap")
    assert (st.frames, st.lost, st.restarts) == (5, 1, 1)
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert json.loads(lines[0][2:])["plant"] == "tendon"
    assert lines[1] == ("t,k,ref_x,ref_y,ref_z,y_x,y_y,y_z,u_T1,u_T2,u_T3,iterations,status,"
                        "residual,work_us,overrun")
    run = load_run(tmp_path / "m.csv")
    # t = k x period; after the restart (k 9 -> 3) t carries on
    np.testing.assert_allclose(read_log(tmp_path / "m.csv").t,
                               [0.010, 0.012, 0.014, 0.018, 0.020])
    assert run.output_names == ["x", "y", "z"] and run.output_units == ["mm"] * 3
    np.testing.assert_allclose(run.work, [500.0, 600.0, 700.0, 900.0, 300.0])  # us
    mc = load_run(tmp_path / "m.mcap")
    np.testing.assert_allclose(mc.y, run.y) and np.testing.assert_allclose(mc.u, run.u)
    assert list(mc.status) == [0, 0, 1, 0, 0]


def test_monitor_without_a_plant_names_columns_by_index_and_says_when_nothing_arrives(tmp_path):
    from nnmpc.host.loop.monitor import monitor

    st = monitor(FakePort(telemetry([0, 1], p=2, m=1)), tmp_path / "g.csv", max_frames=2,
                 duration=5.0)
    header = (tmp_path / "g.csv").read_text().splitlines()[0]
    assert header == "t,k,ref_0,ref_1,y_0,y_1,u_0,iterations,status,residual,work,overrun"
    assert st.warnings == []
    st = monitor(FakePort(b"\x13\x37" * 40 + b"\x00"), None, duration=0.6, idle_warn_s=0.3,
                 port_name="socket://127.0.0.1:4321")
    assert st.warnings == [
        "no telemetry in 0.3 s on socket://127.0.0.1:4321: is the loop started (`nnmpc run "
        "--port`)? frames seen: 0 valid, 1 corrupt (wrong baud rate?)"]
    st = monitor(FakePort(b""), None, duration=0.2, idle_warn_s=5.0, port_name="/dev/ttyACM0")
    assert len(st.warnings) == 1 and "nothing received at all" in st.warnings[0]
