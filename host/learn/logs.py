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
import fnmatch
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NnmpcError, ToolMissing

LOG_SUFFIXES = (".csv", ".mcap")
SOLVER_COLUMNS = ("iterations", "status", "residual", "work_us", "work", "overrun")
# (column prefix or None for the solver columns, topic, schema title); the first match wins,
# columns that match none go to /extra.
CHANNELS = (
    ("ref_", "/reference", "nnmpc.Reference"),
    ("ytrue_", "/output_true", "nnmpc.OutputTrue"),
    ("y_", "/output", "nnmpc.Output"),
    ("u_", "/input", "nnmpc.Input"),
    (None, "/solver", "nnmpc.Solver"),
    ("", "/extra", "nnmpc.Extra"),
)
MCAP_METADATA = "nnmpc"
INTEGER_COLUMNS = ("k", "iterations", "status", "overrun", "work")


def channel_of(column: str) -> tuple[str, str, str]:
    """(topic, schema title, field name) a column goes to in an MCAP file."""
    for prefix, topic, title in CHANNELS:
        if prefix is None:
            if column in SOLVER_COLUMNS:
                return topic, title, column
        elif column.startswith(prefix):
            return topic, title, column[len(prefix):]
    raise AssertionError(column)  # "" matches everything


@dataclass
class LogTable:
    """A log's columns as read (CSV: strings; MCAP: floats), with where each row came from."""

    path: Path
    names: list[str]                      # column names in file order, "t" among them
    cells: dict[str, np.ndarray]          # column -> values (str or float), one per row
    lines: np.ndarray                     # per row: CSV line number / MCAP period index
    meta: dict = field(default_factory=dict)
    row_word: str = "row"                 # "row" (CSV) or "message" (MCAP)
    _float: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.lines)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, t, columns: dict[str, np.ndarray], meta: dict | None = None,
                    path: str | Path = "<memory>") -> "LogTable":
        """A table from arrays: ``t`` (T,) and ``{column: (T,) values}`` in order."""
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        cells = {"t": t}
        for name, v in columns.items():
            v = np.asarray(v, dtype=np.float64).reshape(-1)
            if len(v) != len(t):
                raise NnmpcError(f"column {name} has {len(v)} values for {len(t)} times")
            cells[name] = v
        return cls(Path(path), list(cells), cells, np.arange(1, len(t) + 1), dict(meta or {}))

    @classmethod
    def from_signals(cls, t, u, y, input_names, output_names, meta: dict | None = None,
                     extra: dict[str, np.ndarray] | None = None) -> "LogTable":
        """A collect log: ``u`` (T, m) as ``u_<name>``, ``y`` (T, p) as ``y_<name>``, then
        ``extra`` columns (e.g. ``ytrue_<name>``)."""
        u, y = np.atleast_2d(u), np.atleast_2d(y)
        cols = {f"u_{n}": u[:, j] for j, n in enumerate(input_names)}
        cols.update({f"y_{n}": y[:, j] for j, n in enumerate(output_names)})
        cols.update(extra or {})
        return cls.from_arrays(t, cols, meta)

    # -- reading values -------------------------------------------------------------------
    def where(self, i: int) -> str:
        """'row 17' (CSV line number) or 'message 17 (t = 0.16 s)' (MCAP)."""
        if self.row_word == "row":
            return f"row {int(self.lines[i])}"
        t = self.cells.get("t")
        return f"message {int(self.lines[i])}" + (
            f" (t = {float(t[i]):.6g} s)" if t is not None else "")

    def has(self, name: str) -> bool:
        return name in self.cells

    def require(self, name: str) -> None:
        if name not in self.cells:
            raise NnmpcError(f"{self.path}: no column '{name}' (it has: "
                             f"{', '.join(self.names) or 'no columns'})")

    def column(self, name: str, missing_ok: bool = False) -> np.ndarray:
        """The column as float64; one-line error at the first empty, non-numeric or
        non-finite value (with ``missing_ok`` only non-numeric values are errors; empty and
        non-finite ones read as NaN)."""
        key = (name, missing_ok)
        if key in self._float:
            return self._float[key]
        self.require(name)
        raw = self.cells[name]
        try:
            v = np.asarray(raw, dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(v))
        except ValueError:
            v, bad = None, None
        if bad is None and missing_ok:
            v = np.array([_lenient(c) for c in raw], dtype=np.float64)
            bad = np.zeros(0, dtype=int) if not np.isinf(v).any() else None
        if bad is None or (len(bad) and not missing_ok):
            for i, cell in enumerate(raw):
                problem = _bad_value(cell)
                if problem:
                    raise NnmpcError(f"{self.path}: {self.where(i)}, column {name}: {problem}")
        self._float[key] = v
        return v

    @property
    def t(self) -> np.ndarray:
        """``t`` in seconds, checked to increase strictly (and to have a row at all)."""
        if len(self) == 0:
            raise NnmpcError(f"{self.path}: no data rows (only "
                             + ("the header)" if self.row_word == "row" else "metadata)"))
        t = self.column("t")
        step = np.diff(t)
        bad = np.flatnonzero(~(step > 0))
        if len(bad):
            i = int(bad[0]) + 1
            raise NnmpcError(f"{self.path}: {self.where(i)}: t = {t[i]:.9g} s does not come "
                             f"after t = {t[i - 1]:.9g} s of the row before (t must increase)")
        return t

    def dt(self) -> float:
        """The sample period: the metadata's ``dt`` (or ``dt_s``), else the median step of t."""
        for key in ("dt", "dt_s"):
            if isinstance(self.meta.get(key), (int, float)) and self.meta[key] > 0:
                return float(self.meta[key])
        t = self.t
        return float(f"{np.median(np.diff(t)):.9g}") if len(t) > 1 else 0.0

    def unit(self, name: str) -> str:
        units = self.meta.get("units")
        return str(units.get(name, "")) if isinstance(units, dict) else ""

    def select(self, patterns: list[str] | tuple[str, ...], what: str) -> list[str]:
        """Columns matching any of ``patterns`` (names or fnmatch globs, comma-separated
        or repeated), in pattern order then file order; an error lists the columns when a
        pattern matches none."""
        pats = [p.strip() for pat in patterns for p in pat.split(",") if p.strip()]
        out: list[str] = []
        for pat in pats:
            hits = [n for n in self.names if n != "t" and fnmatch.fnmatchcase(n, pat)]
            if not hits:
                raise NnmpcError(f"{self.path}: {what} '{pat}' matches no column (it has: "
                                 f"{', '.join(self.names)})")
            out += [n for n in hits if n not in out]
        if not out:
            raise NnmpcError(f"{self.path}: no {what} columns selected")
        return out

    def matrix(self, names: list[str]) -> np.ndarray:
        return np.stack([self.column(n) for n in names], axis=-1) if names else \
            np.zeros((len(self), 0))

    def is_run(self) -> bool:
        """A run log (solver columns), not a collect log."""
        kind = self.meta.get("kind")
        if kind in ("run", "collect"):
            return kind == "run"
        return "status" in self.cells and "iterations" in self.cells


def _lenient(cell) -> float:
    """A cell as float: empty -> NaN; a non-number -> inf (flagged by the caller)."""
    s = str(cell).strip()
    if s == "":
        return math.nan
    try:
        return float(s)
    except ValueError:
        return math.inf


def _bad_value(cell) -> str | None:
    if isinstance(cell, (float, np.floating)):
        if math.isnan(cell):
            return "missing value"
        return None if math.isfinite(cell) else f"{cell} is not a finite number"
    s = str(cell).strip()
    if s == "":
        return "missing value (empty field)"
    try:
        v = float(s)
    except ValueError:
        return f"'{s}' is not a number"
    return None if math.isfinite(v) else f"'{s}' is not a finite number"


def strip_prefix(column: str) -> str:
    for p in ("ytrue_", "ref_", "y_", "u_"):
        if column.startswith(p):
            return column[len(p):]
    return column


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


# -- MCAP ---------------------------------------------------------------------------------------
def _foxglove():
    try:
        import foxglove  # noqa: PLC0415
    except ImportError:
        raise ToolMissing("MCAP logs need foxglove-sdk and mcap: pip install -r requirements.txt"
                          " (or run `make setup`)") from None
    return foxglove


def _schema(title: str, fields: list[str], units: dict[str, str]) -> dict:
    props = {}
    for f, col in fields:
        p = {"type": "integer" if col in INTEGER_COLUMNS else "number"}
        if units.get(col):
            p["description"] = units[col]
        props[f] = p
    return {"title": title, "type": "object", "properties": props,
            "required": [f for f, _ in fields]}


class McapLogWriter:
    """Write a log to MCAP row by row (streaming): one JSON channel per signal group.

    ``columns`` excludes ``t``; ``write(t, values)`` logs one period at log time ``t``
    seconds (must be >= 0 and increase). Non-finite values are written as ``null``.
    """

    def __init__(self, path: str | Path, columns: list[str], meta: dict | None = None,
                 units: dict[str, str] | None = None) -> None:
        fg = _foxglove()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".part")
        self.columns = [c for c in columns if c != "t"]
        units = dict(units or (meta or {}).get("units") or {})
        self._ctx = fg.Context()
        self._writer = fg.open_mcap(self._tmp, allow_overwrite=True, context=self._ctx)
        groups: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        self._route: list[tuple[str, str]] = []
        for c in self.columns:
            topic, title, fld = channel_of(c)
            groups.setdefault(topic, (title, []))[1].append((fld, c))
            self._route.append((topic, fld))
        self._channels = {
            topic: fg.Channel(topic, schema=_schema(title, fields, units), context=self._ctx,
                              metadata={"columns": json.dumps([c for _, c in fields])})
            for topic, (title, fields) in groups.items()}
        self._writer.write_metadata(MCAP_METADATA, {
            "format": "nnmpc log 1", "columns": json.dumps(["t", *self.columns]),
            "meta": json.dumps(meta or {}, sort_keys=True), "units": json.dumps(units)})
        self._last = -1
        self.rows = 0

    def write(self, t: float, values) -> None:
        ns = int(round(float(t) * 1e9))
        if not math.isfinite(t) or ns < 0:
            raise NnmpcError(f"{self.path}: t = {t} s cannot be an MCAP log time (needs t >= 0)")
        if ns <= self._last:
            raise NnmpcError(f"{self.path}: t = {t} s does not come after the previous row")
        self._last = ns
        msgs: dict[str, dict] = {topic: {} for topic in self._channels}
        for (topic, fld), c, v in zip(self._route, self.columns, values):
            v = float(v)
            msgs[topic][fld] = (None if not math.isfinite(v) else
                                int(round(v)) if c in INTEGER_COLUMNS else v)
        for topic, msg in msgs.items():
            self._channels[topic].log(msg, log_time=ns)
        self.rows += 1

    def close(self) -> Path:
        for ch in self._channels.values():
            ch.close()
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> "McapLogWriter":
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_mcap_table(table: LogTable, path: str | Path) -> Path:
    """Write a table of numbers as MCAP (:class:`McapLogWriter`); all or nothing."""
    t = table.t
    cols = [c for c in table.names if c != "t"]
    data = [np.asarray(table.cells[c], dtype=np.float64) for c in cols]
    units = {c: table.unit(c) for c in cols if table.unit(c)}
    with McapLogWriter(path, cols, table.meta, units) as w:
        for i in range(len(t)):
            w.write(t[i], [d[i] for d in data])
    return Path(path)


def read_mcap_table(path: str | Path) -> LogTable:
    """Read an MCAP log written by :class:`McapLogWriter` (or any file with JSON channels of
    flat numeric objects: columns are then named ``<prefix><field>`` by topic)."""
    path = Path(path)
    try:
        from mcap.reader import make_reader  # noqa: PLC0415
    except ImportError:
        raise ToolMissing("MCAP logs need mcap: pip install -r requirements.txt") from None
    prefix = {topic: (p or "") for p, topic, _ in CHANNELS}
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise NnmpcError(f"{path}: no such file") from None
    rows: dict[int, dict[str, float]] = {}
    order: list[str] = []
    meta, units = {}, {}
    with fh:
        try:
            reader = make_reader(fh)
            for rec in reader.iter_metadata():
                if rec.name == MCAP_METADATA:
                    order = json.loads(rec.metadata.get("columns", "[]"))
                    meta = json.loads(rec.metadata.get("meta", "{}"))
                    units = json.loads(rec.metadata.get("units", "{}"))
            for _schema_rec, channel, message in reader.iter_messages(log_time_order=True):
                if channel.message_encoding != "json":
                    continue
                try:
                    msg = json.loads(message.data)
                except ValueError:
                    raise NnmpcError(f"{path}: a message on {channel.topic} is not JSON"
                                     ) from None
                if not isinstance(msg, dict):
                    continue
                pre = prefix.get(channel.topic, channel.topic.strip("/").replace("/", "_") + "_")
                row = rows.setdefault(message.log_time, {})
                for k, v in msg.items():
                    col = pre + k
                    if col not in order:
                        order.append(col)
                    row[col] = float(v) if isinstance(v, (int, float)) else math.nan
        except NnmpcError:
            raise
        except Exception as e:  # noqa: BLE001 - the mcap reader's own errors
            raise NnmpcError(f"{path}: not a readable MCAP file ({type(e).__name__}: {e})"
                             ) from None
    times = sorted(rows)
    names = ["t"] + [c for c in order if c != "t"]
    cells = {"t": np.array(times, dtype=np.float64) / 1e9}
    for c in names[1:]:
        cells[c] = np.array([rows[ts].get(c, math.nan) for ts in times], dtype=np.float64)
    if units:
        meta = dict(meta)
        meta["units"] = {**units, **(meta.get("units") or {})}
    return LogTable(path, names, cells, np.arange(1, len(times) + 1), meta, row_word="message")


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
