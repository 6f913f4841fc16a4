"""One controller-settings object for simulation and hardware alike (``nnmpc run --config``).

:class:`ControllerSettings` holds everything the device's controller takes: which controller,
the net's kind and lags, the signals (names, units, which outputs are tracked), input limits,
weights, horizon and moves, damping, iteration cap, time budget and rate. The same object
configures the emulated board in simulation and a real board at a port; it is written and read
as TOML (``nnmpc run --plant P --write-config CTL.toml`` starts one from a plant's default) and
checked against the board's HELLO before anything is sent.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from ..link import protocol_msgs as M

#: Controller name -> the device's CONFIG code. pid-preview and pid-ff are the device's PID
#: (1): pid-preview given the reference ``preview`` periods ahead, pid-ff also with the
#: PID message's feed-forward (kff, kdff, y_bias, lead).
CONTROLLERS = {"nr": 0, "pid": 1, "fd": 2, "pid-preview": 1, "pid-ff": 1}
PIDS = ("pid", "pid-preview", "pid-ff")
#: The [pid] table: required keys (every PID), the feed-forward's (pid-ff), optional ones.
PID_KEYS = ("kp", "ki", "kd", "u_bias", "mix")
PID_FF_KEYS = ("kff", "kdff", "y_bias", "lead")
PID_OPTIONAL = ("preview",)
SOURCES = {"host": 0, "device": 1, "board": 2}
CH = M.CHANNELS


def _pad(values, n=CH, fill=0.0) -> list[float]:
    v = [float(x) for x in values][:n]
    return v + [fill] * (n - len(v))


@dataclass
class ControllerSettings:
    """The controller of one run; see docs/RIG.md for every key."""

    outputs: list[str]
    inputs: list[str]
    tracked: list[str]
    u_lo: list[float]
    u_hi: list[float]
    output_units: list[str] = field(default_factory=list)
    input_units: list[str] = field(default_factory=list)
    plant: str = ""                   # the simulated plant the settings came from, if any
                                      # (names its step and sine references)
    controller: str = "nr"            # nr, pid, fd
    net: str = "fk"                   # fk (quasi-static) or narx
    na: int = 0                       # output lags in the net's input
    nb: int = 1                       # input lags
    rate_hz: float = 100.0
    budget_us: int = 0                # solver time per period, 0 = none
    horizon: int = 1
    moves: int = 1
    max_iter: int = 8
    q: list[float] = field(default_factory=list)   # per output, default 1 on tracked outputs
    r: float = 0.0                    # move weight
    s: float = 0.0                    # pull towards the middle of the input range
    u_nom: list[float] | None = None  # default: the middle of the range
    bias_gain: float = 0.0            # output-disturbance filter gain, [0, 1]
    lag: float = 0.0                  # fk nets: output lag pole per period, [0, 1)
    y_filter: float = 0.0             # narx nets: model share in the output lags, [0, 1)
    estimator: bool = False           # narx nets: extended Kalman filter on the output lags
                                      # (firmware built with NNMPC_ESTIMATOR; replaces y_filter)
    estimator_q: list[float] | None = None  # its process noise variance per output, >= 0
    estimator_r: list[float] | None = None  # its measurement noise variance per output, > 0
    estimator_qd: list[float] | None = None  # process noise variance of its disturbance
                                      # estimate d per output, >= 0 (bias_gain is not used)
    lambda0: float = 1e-3             # initial Levenberg-Marquardt damping
    tol_step: float = 1e-4
    fd_eps: float = 0.0               # fd controller: difference step (0: 1e-3 of the range)
    u_init: list[float] | None = None  # input at start; default: the middle of the range
    y_lo: list[float] | None = None   # plausible measurement range per output: a reading
    y_hi: list[float] | None = None   # outside it is refused (u held, status 5)
    u_safe: list[float] | None = None  # held when the host's measurements stop (fixed rate)
    link_timeout: int = 0             # periods without a measurement before u_safe, 0 = never
    pid: dict | None = None           # kp, ki, kd, u_bias, mix (m x p); pid-ff: kff, kdff,
                                      # y_bias, lead; pid-preview, pid-ff: preview

    @property
    def p(self) -> int:
        return len(self.outputs)

    @property
    def m(self) -> int:
        return len(self.inputs)

    @property
    def dt(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def tracked_index(self) -> tuple[int, ...]:
        return tuple(self.outputs.index(n) for n in self.tracked)

    @property
    def preview(self) -> int:
        """Periods the PID's reference is ahead of the scored one (the uploaded trajectory is
        r[k + preview]): the [pid] table's ``preview``, 0 without one."""
        return int(self.pid.get("preview", 0)) if self.pid else 0

    def check(self, where: str = "controller settings") -> None:
        """Every value in range; one line naming the key otherwise."""
        def bad(key: str, why: str):
            raise NnmpcError(f"{where}: {key}: {why}")
        if self.controller not in CONTROLLERS:
            bad("controller", f"'{self.controller}' is not one of {', '.join(CONTROLLERS)}")
        if self.net not in ("fk", "narx"):
            bad("net", f"'{self.net}' is not fk or narx")
        if not 1 <= self.p <= CH or not 1 <= self.m <= CH:
            bad("outputs/inputs", f"1 to {CH} of each (have {self.p} and {self.m})")
        for key in ("u_lo", "u_hi"):
            if len(getattr(self, key)) != self.m:
                bad(key, f"needs {self.m} values, one per input")
        if any(lo >= hi for lo, hi in zip(self.u_lo, self.u_hi)):
            bad("u_lo/u_hi", "every low must be below its high")
        for n in self.tracked:
            if n not in self.outputs:
                bad("tracked", f"'{n}' is not an output ({', '.join(self.outputs)})")
        if not self.tracked:
            bad("tracked", "names no output")
        if self.q and len(self.q) != self.p:
            bad("q", f"needs {self.p} values, one per output")
        if not 0.1 <= self.rate_hz <= 100_000:
            bad("rate_hz", f"{self.rate_hz} is outside [0.1, 100000]")
        if not 0 <= self.budget_us <= min(1_000_000, 1e6 / self.rate_hz):
            bad("budget_us", f"{self.budget_us} is outside [0, {int(1e6 / self.rate_hz)}] "
                             "(0 = none, at most one period)")
        if not 1 <= self.horizon <= 10:
            bad("horizon", f"{self.horizon} is outside [1, 10]")
        if not 1 <= self.moves <= self.horizon:
            bad("moves", f"{self.moves} is outside [1, horizon = {self.horizon}]")
        if not 1 <= self.max_iter <= 1000:
            bad("max_iter", f"{self.max_iter} is outside [1, 1000]")
        for key, lo, hi in (("bias_gain", 0, 1), ("lag", 0, 0.999999), ("y_filter", 0, 0.999999)):
            if not lo <= getattr(self, key) <= hi:
                bad(key, f"{getattr(self, key)} is outside [{lo}, {hi:g}]")
        if not isinstance(self.estimator, bool):
            bad("estimator", f"expected true or false, got {self.estimator!r}")
        if self.estimator:
            if self.net != "narx" or self.na < 1:
                bad("estimator", "needs a narx net with output lags (na >= 1)")
            for key, strict in (("estimator_q", False), ("estimator_r", True),
                                ("estimator_qd", False)):
                v = getattr(self, key)
                if v is None or len(v) != self.p:
                    bad(key, f"needs {self.p} values, one per output (the estimator is on)")
                if any(not (x > 0 if strict else x >= 0) or not np.isfinite(x) for x in v):
                    bad(key, "every value must be finite and " + ("> 0" if strict else ">= 0"))
        for key in ("r", "s", "lambda0", "tol_step", "fd_eps"):
            if not getattr(self, key) >= 0:
                bad(key, "must be >= 0")
        for key in ("y_lo", "y_hi"):
            v = getattr(self, key)
            if v is not None and len(v) != self.p:
                bad(key, f"needs {self.p} values, one per output")
        if self.y_lo is not None and self.y_hi is not None and any(
                lo >= hi for lo, hi in zip(self.y_lo, self.y_hi)):
            bad("y_lo/y_hi", "every low must be below its high")
        if self.u_safe is not None:
            if len(self.u_safe) != self.m:
                bad("u_safe", f"needs {self.m} values, one per input")
            if any(not lo <= v <= hi for v, lo, hi in zip(self.u_safe, self.u_lo, self.u_hi)):
                bad("u_safe", "must lie inside [u_lo, u_hi]")
        if not 0 <= self.link_timeout <= 65535:
            bad("link_timeout", f"{self.link_timeout} is outside [0, 65535] periods")
        if self.controller in PIDS:
            self._check_pid(bad)

    def _check_pid(self, bad) -> None:
        """The [pid] table of a PID controller: every key known, every value of its kind."""
        if self.pid is None:
            bad("pid", f"the {self.controller} controller needs [pid] gains "
                       f"({', '.join(PID_KEYS + (PID_FF_KEYS if self.controller == 'pid-ff' else ()))})")
        if not isinstance(self.pid, dict):
            bad("pid", f"expected a table, got {self.pid!r}")
        known = PID_KEYS + PID_FF_KEYS + PID_OPTIONAL
        unknown = sorted(set(self.pid) - set(known))
        if unknown:
            bad(f"pid.{unknown[0]}", f"unknown key (known: {', '.join(known)})")
        need = PID_KEYS + (PID_FF_KEYS if self.controller == "pid-ff" else ())
        for key in need:
            if key not in self.pid:
                bad(f"pid.{key}", f"missing (the {self.controller} controller needs "
                                  f"{', '.join(need)})")

        def number(v) -> bool:
            return isinstance(v, (int, float, np.integer, np.floating)) and \
                not isinstance(v, bool) and bool(np.isfinite(v))

        def count(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        for key in ("kp", "ki", "kd", "kff", "kdff"):
            if key in self.pid and not number(self.pid[key]):
                bad(f"pid.{key}", f"expected a finite number, got {self.pid[key]!r}")
        for key in ("kp", "ki", "kd"):
            if self.pid[key] < 0:
                bad(f"pid.{key}", f"{self.pid[key]} must be >= 0")
        for key, n in (("u_bias", self.m), ("mix", self.m * self.p), ("y_bias", self.p)):
            if key not in self.pid:
                continue
            v = self.pid[key]
            v = np.asarray(v).ravel().tolist() if isinstance(v, np.ndarray) else v
            if not isinstance(v, (list, tuple)) or not all(number(x) for x in v):
                bad(f"pid.{key}", f"expected a list of finite numbers, got {v!r}")
            if len(v) != n:
                what = {"u_bias": "one per input", "y_bias": "one per output",
                        "mix": f"the {self.m} x {self.p} mixing matrix, row by row"}[key]
                bad(f"pid.{key}", f"needs {n} values ({what}), has {len(v)}")
        for key, hi in (("lead", 1000), ("preview", 1000)):
            if key in self.pid and not (count(self.pid[key]) and 0 <= self.pid[key] <= hi):
                bad(f"pid.{key}", f"expected a whole number of periods in [0, {hi}], got "
                                  f"{self.pid[key]!r}")

    # -- the device's messages ------------------------------------------------------------
    def messages(self, *, source: str = "host", lockstep: bool = True, u_init=None) -> list:
        """CONFIG, WEIGHTS, LIMITS (and PID) in the order the device takes them. ``lockstep``
        (host source only): one period per SENSOR frame instead of the fixed rate."""
        self.check()
        p, m = self.p, self.m
        lo, hi = np.array(self.u_lo, float), np.array(self.u_hi, float)
        mid = 0.5 * (lo + hi)
        u0 = np.clip(np.asarray(u_init if u_init is not None else
                                (self.u_init if self.u_init is not None else mid), float), lo, hi)
        N, Nc = self.horizon, min(self.moves, self.horizon)
        period_us = 0 if (source == "host" and lockstep) else int(round(1e6 / self.rate_hz))
        tr = self.tracked_index
        q = self.q or [1.0 if i in tr else 0.0 for i in range(p)]
        msgs = [
            M.ConfigRequest(controller=CONTROLLERS[self.controller], source=SOURCES[source],
                            p=p, m=m, na=self.na, nb=self.nb, horizon=N, moves=Nc,
                            period_us=period_us, budget_us=int(self.budget_us),
                            max_iter=self.max_iter, telemetry_every=1,
                            fd_eps=float(self.fd_eps or 1e-3 * np.max(hi - lo))),
            M.WeightsRequest(q=_pad(q), r=_pad([self.r] * m), s=_pad([self.s] * m),
                             u_nom=_pad(self.u_nom if self.u_nom is not None else mid),
                             bias_gain=self.bias_gain, tol_step=self.tol_step,
                             lambda0=self.lambda0, lag=self.lag if self.net == "fk" else 0.0,
                             y_filter=self.y_filter if self.net == "narx" else 0.0),
            M.LimitsRequest(u_lo=_pad(lo), u_hi=_pad(hi), u_init=_pad(u0)),
        ]
        if self.y_lo is not None or self.u_safe is not None or self.link_timeout:
            y_lo = self.y_lo if self.y_lo is not None else [0.0] * p   # 0, 0: |y| <= 1e6
            y_hi = self.y_hi if self.y_hi is not None else [0.0] * p
            msgs.append(M.SafetyRequest(link_timeout=int(self.link_timeout), reserved=0,
                                        u_safe=_pad(self.u_safe if self.u_safe is not None
                                                    else u0), y_lo=_pad(y_lo), y_hi=_pad(y_hi)))
        if self.estimator:
            msgs.append(M.EstimatorRequest(enable=1, reserved=0, reserved2=0,
                                           q=_pad(self.estimator_q), r=_pad(self.estimator_r),
                                           qd=_pad(self.estimator_qd)))
        if self.pid is not None:
            mix = np.zeros((CH, CH))
            mix[:m, :p] = np.asarray(self.pid["mix"], float).reshape(m, p)
            g = lambda v: _pad([v if i in tr else 0.0 for i in range(p)])  # noqa: E731
            msgs.append(M.PidRequest(kp=g(self.pid["kp"]), ki=g(self.pid["ki"]),
                                     kd=g(self.pid["kd"]), u_bias=_pad(self.pid["u_bias"]),
                                     mix=[float(v) for v in mix.ravel()],
                                     **feedforward_fields(self.pid, tr)))
        return msgs

    def check_hello(self, hello, *, board_sensors: bool) -> None:
        """Refuse a board whose model or channels do not fit these settings."""
        n_in = self.m if self.net == "fk" else self.na * self.p + self.nb * self.m
        if hello.n_out != self.p or hello.n_in != n_in:
            raise NnmpcError(
                f"board '{hello.board}' runs a net with {hello.n_in} inputs and {hello.n_out} "
                f"outputs; these settings need {n_in} and {self.p} ({self.net} net, "
                f"{self.p} outputs, {self.m} inputs" +
                (f", lags {self.na}/{self.nb})" if self.net == "narx" else ")"))
        if self.horizon > hello.max_horizon:
            raise NnmpcError(f"horizon {self.horizon}: board '{hello.board}' takes at most "
                             f"{hello.max_horizon}")
        if board_sensors and (hello.sensors < self.p or hello.actuators < self.m):
            raise NnmpcError(
                f"board '{hello.board}' has {hello.sensors} sensors and {hello.actuators} "
                f"actuators; these settings need {self.p} and {self.m} (flash firmware built "
                "with on-board sensing, or run hardware-in-the-loop with --plant)")

    # -- the file -------------------------------------------------------------------------
    def to_toml(self) -> str:
        lines = ["# nnmpc controller settings (docs/RIG.md): one file for simulation and the board.", ""]
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or f.name == "pid":
                continue
            lines.append(f"{f.name} = {_toml(v)}")
        if self.pid is not None:
            lines += ["", "[pid]"] + [f"{k} = {_toml(v)}" for k, v in self.pid.items()]
        return "\n".join(lines) + "\n"

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(self.to_toml())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> "ControllerSettings":
        path = Path(path)
        if not path.is_file():
            raise NnmpcError(f"--config {path}: no such file")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise NnmpcError(f"{path}: not valid TOML: {e}") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NnmpcError(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
        for key in ("outputs", "inputs", "tracked", "u_lo", "u_hi"):
            if key not in data:
                raise NnmpcError(f"{path}: missing key '{key}'")
        try:
            cs = cls(**data)
        except TypeError as e:
            raise NnmpcError(f"{path}: {e}") from None
        for f in fields(cls):  # the file's types, checked before any value is used
            v, kind = getattr(cs, f.name), str(f.type)
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            if kind in ("int", "float") and not number:
                raise NnmpcError(f"{path}: {f.name}: expected a number, got {v!r}")
            if kind == "bool" and not isinstance(v, bool):
                raise NnmpcError(f"{path}: {f.name}: expected true or false, got {v!r}")
            if kind == "str" and not isinstance(v, str):
                raise NnmpcError(f"{path}: {f.name}: expected a string, got {v!r}")
            if kind.startswith("list") and v is not None and not isinstance(v, list):
                raise NnmpcError(f"{path}: {f.name}: expected a list, got {v!r}")
            if kind.startswith("list[float]") and v is not None and not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise NnmpcError(f"{path}: {f.name}: expected numbers, got {v!r}")
        cs.check(str(path))
        return cs

    def as_dict(self) -> dict:
        return asdict(self)


def feedforward_fields(pid: dict, tracked, n: int = CH) -> dict:
    """The PID message's feed-forward fields for ``pid`` (kff, kdff on the ``tracked``
    outputs, y_bias, lead); all zero (no feed-forward) without ``kff`` in ``pid``."""
    if "kff" not in pid:
        return {"kff": [0.0] * n, "kdff": [0.0] * n, "y_bias": [0.0] * n, "lead": 0}

    def g(v):
        return [float(v) if i in tracked else 0.0 for i in range(n)]

    return {"kff": g(pid["kff"]), "kdff": g(pid["kdff"]),
            "y_bias": _pad(np.asarray(pid["y_bias"], float).ravel(), n),
            "lead": int(pid["lead"])}


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_toml(x) for x in np.asarray(v).ravel().tolist()) + "]" \
            if isinstance(v, np.ndarray) else "[" + ", ".join(_toml(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
