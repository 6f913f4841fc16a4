"""`nnmpc sweep`: a tiny study end to end (SQLite, resumed), a net that cannot fit pruned before
training, one-line errors for bad spaces and storages, and two workers sharing one study in a
real PostgreSQL server started here."""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from nnmpc.host.build.elfsize import image_size  # noqa: E402
from nnmpc.host.cli import main  # noqa: E402

pytestmark = pytest.mark.qemu

#: Small nets, few epochs, short loops: a trial in a few seconds.
TINY = ["--plant", "tendon", "--board", "nucleo_f446re", "--rate-hz", "1000",
        "--depth", "1", "--width", "4,6,8", "--activation", "tanh", "--horizon", "2,3",
        "--moves", "1", "--epochs", "3", "--samples", "400", "--count-periods", "12",
        "--duration", "0.4", "--references", "step,sine"]


def _rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _study(out: Path, name: str = "sweep"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def test_tiny_sweep_writes_front_csv_png_best_and_resumes(tmp_path, capsys):
    out = tmp_path / "sw"
    # Two trials: enough for a front of two nets, one of them chosen; --resume adds a third.
    assert main(["sweep", *TINY, "--trials", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Pareto front" in text and "* " in text

    study = _study(out)
    new = [t for t in study.trials if "repeat_of" not in t.user_attrs]
    assert len(new) == 2
    rows = _rows(out / "trials.csv")
    assert [int(r["number"]) for r in rows] == [t.number for t in study.trials]
    done = [t for t in new if t.state.name == "COMPLETE"]
    assert done, [t.user_attrs.get("error") for t in new]
    period = 180_000                           # 180 MHz / 1 kHz
    for t in done:
        u = t.user_attrs
        d = out / "trials" / f"{t.number:04d}"
        # the figures are the measured ones: flash and RAM of the board's core image...
        size = image_size(d / "core" / "nucleo_f446re.elf")
        assert (u["flash"], u["ram"]) == (size.flash, size.ram)
        assert t.values[2] == size.flash
        # ...the estimate before training is close below it (code of the layers aside)...
        assert 0 < size.flash - u["estimate_flash"] < 2048
        # ...the worst period counted, with the budget on the board's clock...
        assert 0 < u["cycles_mean"] <= u["cycles_max"] == t.values[1]
        assert u["period_cycles"] == period and u["budget_us"] == 900
        # ...and the closed loops, whose CSV logs are there
        for ref in ("step", "sine"):
            loop = u["loops"][ref]
            assert loop["periods"] == 40 and loop["lost_frames"] == 0
            assert 0 < loop["tracking_rms"] < 50
            assert len(_rows(d / f"loop_{ref}.csv")) == 40
        assert u["tracking"] == pytest.approx(
            (u["loops"]["step"]["tracking_rms"] * u["loops"]["sine"]["tracking_rms"]) ** 0.5)
    # the front: none dominated, the chosen net on it, tracking best
    front = [r for r in rows if r["pareto"] == "1"]
    chosen = [r for r in rows if r["chosen"] == "1"]
    assert front and len(chosen) == 1 and chosen[0]["pareto"] == "1"
    assert float(chosen[0]["tracking"]) == min(float(r["tracking"]) for r in front)
    png = (out / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    best = out / "best"
    info = json.loads((best / "sweep.json").read_text())
    assert info["trial"] == int(chosen[0]["number"])
    assert info["controller"]["horizon"] == int(chosen[0]["horizon"])
    for f in ("model.keras", "model.tflite", "model.onnx", "model.json", "model/model.c",
              "model/model.h"):
        assert (best / f).is_file(), f
    assert "MODEL_INPUT_SIZE 3" in (best / "model" / "model.h").read_text()

    # the same folder again without --resume is refused; with it, trials are added
    assert main(["sweep", *TINY, "--trials", "1", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    before = {t.number: t.values for t in study.trials}
    assert main(["sweep", "--resume", "--trials", "1", "--out", str(out)]) == 0
    after = _study(out).trials
    assert len(after) > len(before)
    assert len({t.number for t in after}) == len(after)
    assert {t.number: t.values for t in after if t.number in before} == before
    assert len(_rows(out / "trials.csv")) == len(after)


def test_a_net_that_cannot_fit_is_pruned_before_training(tmp_path, capsys):
    space = tmp_path / "big.toml"
    space.write_text('kind = ["fk"]\ndepth = [2]\nwidth = [600]\nactivation = ["tanh"]\n'
                     'horizon = [2]\nmoves = [1]\n[train]\nepochs = 2\nsamples = 400\n')
    out = tmp_path / "big"
    assert main(["sweep", "--plant", "tendon", "--board", "nucleo_f446re", "--space",
                 str(space), "--trials", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    (t,) = _study(out).trials
    assert t.state.name == "PRUNED"
    reason = t.user_attrs["pruned"]
    assert "does not fit nucleo_f446re (compile report, before training)" in reason
    assert t.user_attrs["weights_bytes"] >= 4 * 600 * 600 > 524_288
    assert t.user_attrs["estimate_flash"] > 524_288
    assert not (out / "trials" / "0000" / "model.keras").exists()     # never trained
    assert "trial   0 fk 600x600 tanh N=2 Nc=1" in text and "pruned: does not fit" in text
    (row,) = _rows(out / "trials.csv")
    assert row["state"] == "pruned" and "flash about" in row["pruned"]
    assert "no trial within the budgets" in text and not (out / "best").exists()


def numbers_sorted(trials) -> list[int]:
    return sorted(t.number for t in trials)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, message", [
    (["--activation", "tanh,bogus"], "unknown activation 'bogus'"),
    (["--depth", "0"], "depth 0 is out of range"),
    (["--width", "8,x"], "--width '8,x' is not a comma-separated list of integers"),
    (["--precision", "float32,int4"], "precision 'int4' is not one of float32, int8"),
    (["--gru", "0,8"], "gru 8: GRU units apply to kind narx only"),
    (["--kind", "narx", "--gru", "-1"], "gru -1 is out of range"),
    (["--horizon", "2", "--moves", "3"], "every moves value exceeds every horizon"),
    (["--inputs", "u_T1"], "--inputs and --outputs pick columns of a log: they need --data"),
    (["--storage", "postgresql://nnmpc@127.0.0.1:{port}/x"], "cannot open the study storage"),
    (["--storage", "nosuchdb://x"], "cannot open the study storage"),
    (["--storage", "not a url"], "not a database URL"),
])
def test_bad_spaces_and_storages_are_one_line(tmp_path, capsys, args, message):
    args = [a.replace("{port}", str(_free_port())) for a in args]
    assert main(["sweep", "--plant", "tendon", *args, "--trials", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnmpc: error: ") and message in err[0], err


@pytest.mark.parametrize("text, message", [
    ("depth = [1]\nbreadth = [3]\n", "unknown dimension 'breadth'"),
    ("width = {low = 8}\n", "width = { low = ..., high = ..., step = ... }"),
    ("depth = []\n", "depth is an empty list"),
    ("activation = [1]\n", "activation takes strings"),
    ("depth = [1\n", "not valid TOML"),
    ("[train]\nepochs = 0\n", "[train] epochs = 0 must be a positive integer"),
    ('precision = ["int8", 8]\n', "precision takes strings"),
    ('precision = ["int16"]\n', "precision 'int16' is not one of float32, int8"),
    ('kind = ["narx"]\ngru = ["8"]\n', "gru takes integers"),
    ('kind = ["narx"]\ngru = { low = 0, high = 2000, step = 1000 }\n', "gru 2000 is out of range"),
    ('kind = ["fk"]\ngru = [0, 8]\n', "gru 8: GRU units apply to kind narx only"),
])
def test_bad_space_files_are_one_line(tmp_path, capsys, text, message):
    f = tmp_path / "space.toml"
    f.write_text(text)
    assert main(["sweep", "--plant", "tendon", "--space", str(f), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o" / "study.db").exists()


# -- two workers, one PostgreSQL study -----------------------------------------------------
def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL cluster on loopback (as the postgres user when run as root)."""
    bindir = _pg_bin()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="nnmpc-pg-", dir="/tmp"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "nnmpc"], check=True, capture_output=True)
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "-l",
                        str(root / "log"), "-w", "start"], check=True, capture_output=True)
        yield f"postgresql://nnmpc@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("per_worker", [1, pytest.param(3, marks=pytest.mark.soak)])
def test_two_workers_share_one_postgresql_study(postgres, tmp_path, per_worker):
    cmd = [sys.executable, "-m", "nnmpc.host.cli", "sweep", *TINY, "--references", "sine",
           "--storage", postgres, "--study", "shared", "--trials", str(per_worker)]
    procs = [subprocess.Popen([*cmd, "--out", str(tmp_path / f"w{i}")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trials = optuna.load_study(study_name="shared", storage=postgres).trials
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))            # no duplicates, no gaps
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}  # none lost or hanging
    new = [t for t in trials if "repeat_of" not in t.user_attrs]
    workers = [t.user_attrs["worker"] for t in new]
    assert len(set(workers)) == 2
    assert sorted(workers.count(w) for w in set(workers)) == [per_worker] * 2
    # the report of the worker that finished last covers the whole study, both workers' trials
    last = max((tmp_path / w / "trials.csv" for w in ("w0", "w1")),
               key=lambda p: p.stat().st_mtime)
    rows = _rows(last)
    assert sorted(int(r["number"]) for r in rows) == numbers_sorted(trials)
    assert {r["worker"] for r in rows if r["state"] == "complete"} == set(workers)


def test_choice_prefers_a_smaller_net_that_controls_as_well():
    """The front of docs/SWEEP.md's tendon study: the default net (trial 0) tracks best, trial
    28 has a lower path error and less flash: 28 is chosen. Without a smaller net as good,
    the best tracker is."""
    from types import SimpleNamespace as T

    from nnmpc.host.sweep import report as rep

    def trial(n, track, cyc, flash, pe, baseline=False):
        return T(number=n, values=[track, cyc, flash],
                 user_attrs={"path_error": pe, **({"baseline": True} if baseline else {})})

    front = [trial(0, 0.2571, 168495, 32376, 0.107, True), trial(26, 0.2611, 170826, 28840, 0.136),
             trial(15, 0.2625, 174114, 27652, 0.137), trial(28, 0.2628, 170022, 28264, 0.092),
             trial(4, 0.2716, 116460, 27380, 0.144)]
    assert rep.choose(front, 0.0, rep.baseline_of(front)).number == 28
    assert rep.choose(front, 0.0, None).number == 0                  # no default: best tracker
    worse = [t for t in front if t.number != 28]
    assert rep.choose(worse, 0.0, rep.baseline_of(worse)).number == 0
