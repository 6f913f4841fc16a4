"""Logs on disk for the loop stage: run logs (:class:`~.runlog.RunLog`) and collect logs
(:class:`~nnmpc.host.learn.logs.LogTable`) as CSV or MCAP, read back and plotted.

The formats and the MCAP channels are documented in docs/LOGS.md and in
:mod:`nnmpc.host.learn.logs` (the training-data side, which this builds on).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import NnmpcError
from ..learn.logs import (CHANNELS, LOG_SUFFIXES, LogTable, McapLogWriter, read_log,
                          write_csv_table, write_log_table, write_mcap_table)
from .runlog import RunLog, run_from_table, run_table, write_csv

__all__ = ["CHANNELS", "LOG_SUFFIXES", "LogTable", "McapLogWriter", "load_log", "load_run",
           "plot_log", "write_log", "write_mcap"]


def _table(log: RunLog | LogTable) -> LogTable:
    if isinstance(log, RunLog):
        return run_table(log)
    if isinstance(log, LogTable):
        return log
    raise TypeError(f"not a run log or a log table: {type(log).__name__}")


def write_mcap(log: RunLog | LogTable, path: str | Path) -> Path:
    """Write a run log or a collect log as MCAP: channels /reference, /output, /output_true,
    /input, /solver (and /extra for other columns), JSON-encoded with a JSON schema, one
    message per period on each, log time = t. All or nothing."""
    return write_mcap_table(_table(log), path)


def write_log(log: RunLog | LogTable, path: str | Path) -> Path:
    """Write a run log or a collect log by the file's suffix: ``.csv`` (a run log exactly as
    :func:`~.runlog.write_csv` writes it) or ``.mcap`` (:func:`write_mcap`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mcap":
        return write_mcap(log, path)
    if suffix == ".csv":
        return write_csv(log, path) if isinstance(log, RunLog) else write_csv_table(log, path)
    raise NnmpcError(f"{path}: a log is written as .csv or .mcap")


def load_log(path: str | Path) -> RunLog | LogTable:
    """Read a CSV or MCAP log: a :class:`RunLog` for a run log (solver columns), else the
    collect log's :class:`LogTable`."""
    table = read_log(path)
    return run_from_table(table) if table.is_run() else table


def load_run(path: str | Path) -> RunLog:
    """Read a run log (CSV or MCAP) into a :class:`RunLog`."""
    table = read_log(path)
    if not table.is_run():
        raise NnmpcError(f"{path}: not a run log (no iterations/status columns; it has: "
                         f"{', '.join(table.names)})")
    return run_from_table(table)


def plot_log(path: str | Path, out: str | Path | None = None) -> Path:
    """Draw a run log (reference vs output, inputs, solver status) or a collect log (inputs
    and outputs against t) as a PNG: ``out``, or the log's path with ``.png``."""
    from .plot import plot, plot_collect

    path = Path(path)
    out = Path(out) if out is not None else path.with_suffix(".png")
    if out.suffix.lower() != ".png":
        raise NnmpcError(f"-o {out}: the plot is a PNG (name it .png)")
    if out.resolve() == path.resolve():
        raise NnmpcError(f"-o {out}: would overwrite the log")
    log = load_log(path)
    if isinstance(log, RunLog):
        return plot(log, out, title="" if log.controller else f"{path.name}")
    return plot_collect(log, out, title=path.name)
