"""`nnmpc sweep --data`: trials trained on a collect log, scored by the replay of the held-out
log through the host build of the C (a log of no known plant) or in the closed loop on the
simulator of the plant the log names; int8 trials pruned with their figures; GRU trials behind
the selection layer that reads the controller's NARX lags (docs/SWEEP.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from nnmpc.host.cli import main  # noqa: E402
from nnmpc.host.learn.datasets import multisine  # noqa: E402
from nnmpc.host.learn.logs import LogTable, write_log_table  # noqa: E402
from nnmpc.host.plants import get_plant  # noqa: E402

pytestmark = pytest.mark.qemu

#: Tiny nets, few epochs: a trial in a few seconds.
TINY = ["--board", "nucleo_f446re", "--rate-hz", "1000", "--depth", "1", "--width", "4",
        "--activation", "tanh", "--epochs", "3", "--no-baseline"]


def collect_log(path: Path, seconds: float, plant_name: str | None) -> Path:
    """A collect log as tests/test_logs.py makes it: the tendon segment driven by a multisine
    at its sample period, noisy outputs; the metadata names the plant or not."""
    p = get_plant("tendon")
    rng = np.random.default_rng(0)
    n = int(round(seconds / p.dt))
    u = p.clip(multisine(p, n, rng))
    _, ys = p.simulate(u, rng=rng)
    units = {f"u_{s.name}": s.unit for s in p.inputs}
    units.update({f"y_{s.name}": s.unit for s in p.outputs})
    meta = {"dt": p.dt, "units": units, **({"plant": plant_name} if plant_name else {})}
    log = LogTable.from_signals(np.arange(n) * p.dt, u, ys[:-1], [s.name for s in p.inputs],
                                [s.name for s in p.outputs], meta=meta)
    return write_log_table(log, path)


def _rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _study(out: Path):
    return optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")


@pytest.fixture(scope="module")
def rig_log(tmp_path_factory) -> Path:
    return collect_log(tmp_path_factory.mktemp("log") / "rig.csv", 6.0, None)


def test_two_trial_sweep_on_a_log_of_no_known_plant_replays_it_through_the_host_c(
        rig_log, tmp_path, capsys):
    out = tmp_path / "sw"
    # two points: an MLP NARX net and a GRU one (4 units); the x and y outputs only
    assert main(["sweep", "--data", str(rig_log), "--outputs", "y_x,y_y", *TINY,
                 "--kind", "narx", "--lags", "2", "--gru", "0,4", "--trials", "2",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "score: replay of the held-out log through the host build of the C (the log " \
           "names no known plant" in text
    trials = [t for t in _study(out).trials if "repeat_of" not in t.user_attrs]
    assert sorted(t.params["gru"] for t in trials) == [0, 4]
    assert all(t.state.name == "COMPLETE" for t in trials), \
        [t.user_attrs.get("error") for t in trials]
    for t in trials:
        u = t.user_attrs
        assert u["score"] == "replay" and u["cycles_measure"] == "net call"
        assert len(u["replay_free_run_rmse"]) == len(u["val_rmse"]) == 2
        assert u["tracking"] == t.values[0] == pytest.approx(
            np.sqrt(np.prod(u["replay_free_run_rmse"])))
        # the one-step replay through the host C is the net's validation error (same rows)
        assert u["replay_one_step_rmse"] == pytest.approx(u["val_rmse"], rel=1e-3, abs=1e-4)
        assert 0 < u["cycles_max"] == t.values[1] < u["period_cycles"]
        assert u["flash"] == t.values[2] and u["flash"] < u["flash_budget"]
        # the compiled net reads the controller's NARX lags: 2 x (3 inputs + 2 outputs)
        h = (out / "trials" / f"{t.number:04d}" / "model" / "model.h").read_text()
        assert "MODEL_INPUT_SIZE 10" in h and "MODEL_OUTPUT_SIZE 2" in h
    rows = _rows(out / "trials.csv")
    assert {r["score"] for r in rows} == {"replay"}
    assert all(r["replay_free_run_rmse"].count(";") == 1 for r in rows)
    best = json.loads((out / "best" / "sweep.json").read_text())
    meta = json.loads((out / "best" / "model.json").read_text())
    assert meta["source"]["outputs"] == ["y_x", "y_y"] and meta["lags"] == {"ny": 2, "nu": 2}
    assert best["figures"]["score"] == "replay"
    assert "replay" in text and "one model_jacobian call" in text


def test_an_int8_trial_is_pruned_with_its_flash_and_error_not_a_tracking_figure(
        rig_log, tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["sweep", "--data", str(rig_log), *TINY, "--kind", "narx", "--lags", "1",
                 "--precision", "int8", "--trials", "1", "--out", str(out)]) == 0
    (t,) = _study(out).trials
    u = t.user_attrs
    assert t.state.name == "PRUNED" and u["pruned"].startswith("int8 nets get no Jacobian")
    assert "tracking" not in u and "cycles_max" not in u
    assert 0 < u["int8_model_flash"] < u["float_model_flash"]
    assert 0 < u["int8_val_rmse_mean"] < 10 * u["val_rmse_mean"] + 1
    assert u["int8_predict_cycles"] > 0
    (row,) = _rows(out / "trials.csv")
    assert row["precision"] == "int8" and row["tracking"] == "" and int(row["int8_model_flash"])
    assert "no trial within the budgets" in capsys.readouterr().out


def test_a_log_of_a_known_plant_closes_the_loop_on_its_simulator_with_a_gru_net(tmp_path,
                                                                                capsys):
    log = collect_log(tmp_path / "tendon.csv", 6.0, "tendon")
    out = tmp_path / "t"
    assert main(["sweep", "--data", str(log), *TINY, "--kind", "narx", "--lags", "2",
                 "--gru", "4", "--horizon", "2", "--moves", "1",
                 "--count-periods", "12", "--duration", "0.3", "--references", "step",
                 "--trials", "1", "--out", str(out)]) == 0
    assert "score: closed loop (the log is of plant 'tendon'" in capsys.readouterr().out
    (t,) = _study(out).trials
    u = t.user_attrs
    assert t.state.name == "COMPLETE", u.get("error")
    assert u["score"] == "closed loop" and u["cycles_measure"] == "period"
    assert u["tracking"] == pytest.approx(u["loops"]["step"]["tracking_rms"])
    assert u["tracking"] > 0
    assert len(u["replay_one_step_rmse"]) == 3          # the replay is kept beside it
    assert u["replay_one_step_rmse"] == pytest.approx(u["val_rmse"], rel=1e-3, abs=1e-4)
    # the GRU reads the controller's NARX lags through the selection layer: 2 x (3 + 3)
    d = out / "trials" / "0000"
    assert "MODEL_INPUT_SIZE 12" in (d / "model" / "model.h").read_text()
    assert len(_rows(d / "loop_step.csv")) == u["loops"]["step"]["periods"] == 30
    info = json.loads((out / "best" / "model.json").read_text())
    assert info["gru_units"] == 4 and info["lags"] == {"ny": 2, "nu": 2}


@pytest.mark.parametrize("args, message", [
    (["--plant", "tendon"], "--plant and --data exclude each other"),
    (["--outputs", "y_q"], "--outputs 'y_q' matches no column"),
    (["--gru", "4"], "gru 4: GRU units apply to kind narx only"),
    (["--kind", "narx", "--precision", "int4"], "precision 'int4' is not one of float32, int8"),
])
def test_bad_data_options_are_one_line(rig_log, tmp_path, capsys, args, message):
    kind = [] if "--kind" in args else ["--kind", "fk"]
    assert main(["sweep", "--data", str(rig_log), *kind, *args, "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnmpc: error: ") and message in err[0], err
    assert not (tmp_path / "o" / "study.db").exists()


def test_missing_log_and_columns_without_data_are_one_line(tmp_path, capsys):
    assert main(["sweep", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 2
    assert main(["sweep", "--plant", "tendon", "--inputs", "u_T1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "none.csv" in err[0] and "need --data" in err[1], err
