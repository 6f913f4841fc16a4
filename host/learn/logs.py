"""Signal logs on disk: collect logs and run logs as CSV or MCAP, read into one table.

A log is a table of named columns over time, one row per control period:

* CSV: optional leading ``#`` comment lines (a line ``# {json}`` carries metadata such as
  ``{"plant": "tendon", "dt": 0.01, "units": {"u_T1": "N"}}``), then a header row, then one
  row per period. ``t`` (seconds) is required; inputs are ``u_<name>``, outputs ``y_<name>``,
  noise-free outputs ``ytrue_<name>``, references ``ref_<name>``, solver columns
  ``iterations, status, residual, work_us``; anything else is carried along.
* MCAP (written with foxglove-sdk, read with mcap): JSON-encoded channels with a JSON schema,
  one per signal group (:data:`CHANNELS`), one message per period on each, log time = ``t``;
  a metadata record ``nnmpc`` holds the metadata JSON, the column order and the units.

Reading checks nothing but the layout (a header, the same number of fields in every row);
:meth:`LogTable.column` checks the values of the columns that are used, so bad data is
reported as one line naming the file, the row and the column. Row numbers are the file's
line numbers (1-based, counting comment lines and the header); in an MCAP file they are the
period's index (1-based) and its time.

This module is the training-data side (``nnmpc train --data``); ``nnmpc.host.loop.logs``
adds run logs (:class:`~nnmpc.host.loop.runlog.RunLog`) on top of it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from .logtable import (CHANNELS, INTEGER_COLUMNS, LOG_SUFFIXES, MCAP_METADATA,  # noqa: F401
                       SOLVER_COLUMNS, LogTable, channel_of, strip_prefix)
from .mcap import McapLogWriter, read_mcap_table, write_mcap_table  # noqa: F401



# -- CSV ----------------------------------------------------------------------------------------
def read_csv_table(path: str | Path) -> LogTable:
    """Read a CSV log (comments, ``# {json}`` metadata, header, rows) into a table of strings."""
    path = Path(path)
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise NnmpcError(f"{path}: no such file") from None
    except OSError as e:
        raise NnmpcError(f"{path}: cannot read: {e.strerror}") from None
    meta: dict = {}
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    with fh:
        try:
            for ln, line in enumerate(fh, start=1):
                s = line.strip()
                if not s:
                    continue
                if s.startswith("#"):
                    body = s[1:].strip()
                    if body.startswith("{"):
                        try:
                            m = json.loads(body)
                        except json.JSONDecodeError as e:
                            col = line.index("{") + e.colno
                            raise NnmpcError(f"{path}: row {ln}: the metadata comment is not "
                                             f"valid JSON ({e.msg} at column {col})") from None
                        if isinstance(m, dict):
                            meta.update(m)
                    continue
                fields = [c.strip() for c in next(csv.reader([s]))]
                if header is None:
                    header = fields
                    dup = sorted({n for n in header if header.count(n) > 1})
                    if dup:
                        raise NnmpcError(f"{path}: row {ln}: column {dup[0]} appears more than "
                                         "once in the header")
                    if "" in header:
                        raise NnmpcError(f"{path}: row {ln}: the header has an empty column "
                                         f"name (column {header.index('') + 1})")
                    continue
                if len(fields) != len(header):
                    raise NnmpcError(f"{path}: row {ln}: {len(fields)} fields, the header has "
                                     f"{len(header)}")
                rows.append(fields)
                lines.append(ln)
        except UnicodeDecodeError:
            raise NnmpcError(f"{path}: not a text (CSV) file") from None
    if header is None:
        raise NnmpcError(f"{path}: no header row (expected e.g. t,u_T1,y_x)")
    cells = {n: np.array([r[j] for r in rows], dtype=object) for j, n in enumerate(header)}
    table = LogTable(path, header, cells, np.array(lines, dtype=np.int64), meta)
    table.require("t")
    return table


def _fmt(name: str, v: float) -> str:
    if not math.isfinite(v):
        return ""
    if name in INTEGER_COLUMNS:
        return str(int(round(v)))
    if name == "t":
        return f"{v:.6f}"
    return f"{v:.7g}"


def write_csv_table(table: LogTable, path: str | Path) -> Path:
    """Write a table of numbers as a CSV log: ``# {json}`` metadata, header, rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    cols = [table.column(n) if n == "t" else np.asarray(table.cells[n], dtype=np.float64)
            for n in table.names]
    with open(tmp, "w", newline="") as fh:
        if table.meta:
            fh.write("# " + json.dumps(table.meta, sort_keys=True) + "\n")
        w = csv.writer(fh)
        w.writerow(table.names)
        for i in range(len(table)):
            w.writerow([_fmt(n, float(c[i])) for n, c in zip(table.names, cols)])
    os.replace(tmp, path)
    return path


# -- either format ------------------------------------------------------------------------------
def read_log(path: str | Path) -> LogTable:
    """Read a CSV or MCAP log (by suffix)."""
    path = Path(path)
    if path.suffix.lower() == ".mcap":
        return read_mcap_table(path)
    if path.suffix.lower() == ".csv":
        return read_csv_table(path)
    raise NnmpcError(f"{path}: not a log (.csv or .mcap)")


def write_log_table(table: LogTable, path: str | Path) -> Path:
    """Write a table as CSV or MCAP (by suffix)."""
    path = Path(path)
    if path.suffix.lower() == ".mcap":
        return write_mcap_table(table, path)
    if path.suffix.lower() == ".csv":
        return write_csv_table(table, path)
    raise NnmpcError(f"{path}: a log is written as .csv or .mcap")
