"""The closed loop: references, controller settings, PID tuning, runs on a board, run logs,
plots and the monitor.

A run takes a compiled net (:mod:`.nets`), the plant's setup (:mod:`.setups`) and a reference
(:mod:`.references`), sends the settings (:mod:`.settings`) to a board, closes the loop
(:mod:`.closedloop`) and returns a :class:`RunLog` (:mod:`.runlog`), which :func:`plot` draws.
"""

from .closedloop import RunResult, build_for, run_closed_loop, run_on_board
from .nets import NetInfo, infer_lags, prepare_model, train_default
from .pid import pid_mix, simulate_pid, tune_pid
from .plot import plot
from .references import reference
from .runlog import START_NOTE, STATUS_NAMES, RunLog, summary, write_csv
from .settings import CONTROLLERS, configure, settings
from .setups import SETUPS, VARIANTS, PlantSetup, default_u_init, output_lag, setup_for, start_input

__all__ = ["CONTROLLERS", "SETUPS", "START_NOTE", "STATUS_NAMES", "VARIANTS", "NetInfo",
           "PlantSetup", "RunLog", "RunResult", "build_for", "configure", "default_u_init",
           "infer_lags", "output_lag", "pid_mix", "plot", "prepare_model", "reference",
           "run_closed_loop", "run_on_board", "settings", "setup_for", "simulate_pid",
           "start_input", "summary", "train_default", "tune_pid", "write_csv"]
