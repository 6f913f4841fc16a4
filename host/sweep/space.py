"""The search space of a sweep: net kinds, depth and width, activation, precision, NARX lags
or GRU units, and the controller's horizon and moves; from flags or from a TOML file.

A space is a set of named dimensions, each a list of choices or an integer range::

    kind = ["fk"]                      # net kinds: fk (quasi-static), narx (dynamic)
    depth = [1, 2]                     # hidden layers
    width = { low = 8, high = 48, step = 8 }   # units in every hidden layer
    activation = ["tanh", "relu"]
    precision = ["float32", "int8"]    # int8: full-integer TFLite, figures only (no Jacobian)
    lags = [1, 2]                      # NARX output and input lags (narx only)
    gru = [0, 8]                       # GRU units before the Dense layers (narx only; 0: none)
    horizon = [2, 3, 4]                # prediction horizon N (receding-horizon kinds)
    moves = [1, 2]                     # free moves Nc <= N (receding-horizon kinds)

    [train]                            # fixed for every trial
    epochs = 200
    samples = 4000
    patience = 25

Every bad value is one :class:`~nnmpc.host.errors.NnmpcError` line naming the dimension.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import NnmpcError
from ..learn.train import ACTIVATIONS
from ..loop.setups import SETUPS, setup_for
from ..plants import Plant

DIMENSIONS = ("kind", "depth", "width", "activation", "precision", "lags", "gru", "horizon",
              "moves")
INT_DIMENSIONS = ("depth", "width", "lags", "gru", "horizon", "moves")
TRAIN_KEYS = ("epochs", "samples", "patience", "batch_size", "lr")
KINDS = ("fk", "narx")
PRECISIONS = ("float32", "int8")
MAX_HORIZON = 10      # the solver's N (docs/MPC.md)
MAX_LAGS = 8          # lags the closed loop reads off a net's input size (loop.nets.infer_lags)

#: Why an int8 trial has no closed loop (its pruning reason starts with this).
INT8_NO_MPC = ("int8 nets get no Jacobian from the compiler (the function is piecewise "
               "constant) and the Newton MPC needs one: no period count and no closed loop")


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


Choices = list  # a list of values of one dimension


@dataclass(frozen=True)
class NetParams:
    """One point of the space: the net and the controller settings of one trial."""

    kind: str
    depth: int
    width: int
    activation: str
    precision: str = "float32"
    lags: int = 0            # NARX lags (0 for fk)
    gru: int = 0
    horizon: int = 0         # 0: not a receding-horizon kind (N = Nc = 1)
    moves: int = 0

    @property
    def hidden(self) -> tuple[int, ...]:
        return (self.width,) * self.depth

    def describe(self) -> str:
        s = f"{self.kind} {'x'.join(map(str, self.hidden))} {self.activation}"
        if self.kind == "narx":
            s += f" lags {self.lags}" + (f" gru {self.gru}" if self.gru else "")
        if self.precision != "float32":
            s += f" {self.precision}"
        if self.horizon:
            s += f" N={self.horizon} Nc={self.moves}"
        return s

    def key(self) -> tuple:
        return tuple(asdict(self).values())

    @classmethod
    def from_params(cls, params: dict) -> "NetParams":
        return cls(**{k: params[k] for k in cls.__dataclass_fields__ if k in params})


@dataclass
class SearchSpace:
    dims: dict[str, Choices | IntRange] = field(default_factory=dict)
    train: dict = field(default_factory=dict)

    # -- building -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {}
        for k, v in self.dims.items():
            out[k] = asdict(v) if isinstance(v, IntRange) else list(v)
        return {"dims": out, "train": dict(self.train)}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        dims = {k: IntRange(**v) if isinstance(v, dict) else list(v)
                for k, v in d.get("dims", {}).items()}
        return cls(dims, dict(d.get("train", {})))

    def values(self, dim: str) -> list:
        v = self.dims[dim]
        return v.values() if isinstance(v, IntRange) else list(v)

    def receding(self, plant: Plant | None, kind: str) -> bool:
        """Whether the controller predicts over a horizon with nets of ``kind``: dynamic nets,
        and forward-kinematics nets inverted through the plant's output lag. Without a plant
        (a log of an unknown plant) no controller runs: never."""
        if plant is None:
            return False
        return kind == "narx" or setup_for(plant, kind).lag

    def size(self, plant: Plant) -> int:
        n = 0
        for kind in self.values("kind"):
            k = len(self.values("depth")) * len(self.values("width")) * \
                len(self.values("activation")) * len(self.values("precision"))
            if kind == "narx":
                k *= len(self.values("lags")) * len(self.values("gru"))
            if self.receding(plant, kind):
                k *= sum(1 for N in self.values("horizon") for c in self.values("moves")
                         if c <= N)
            n += k
        return n

    # -- sampling --------------------------------------------------------------------------------
    def suggest(self, trial, plant: Plant) -> NetParams:
        """The trial's point; conditional dimensions are asked for only where they apply."""
        def ask(dim: str, values=None):
            spec = self.dims[dim] if values is None else values
            if isinstance(spec, IntRange):
                return trial.suggest_int(dim, spec.low, spec.high, step=spec.step)
            return trial.suggest_categorical(dim, list(spec))

        kind = ask("kind")
        p = dict(kind=kind, depth=ask("depth"), width=ask("width"),
                 activation=ask("activation"), precision=ask("precision"))
        if kind == "narx":
            p.update(lags=ask("lags"), gru=ask("gru"))
        if self.receding(plant, kind):
            N = ask("horizon")
            moves = [c for c in self.values("moves") if c <= N]
            # Nc <= N: a distribution per horizon, so the sampler never proposes Nc > N.
            c = trial.suggest_categorical(f"moves_N{N}", moves)
            p.update(horizon=N, moves=c)
        return NetParams(**p)

    def point(self, params: NetParams) -> dict:
        """``params`` as the trial parameters :meth:`suggest` would ask for (to enqueue)."""
        d = {k: getattr(params, k) for k in ("kind", "depth", "width", "activation",
                                             "precision")}
        if params.kind == "narx":
            d.update(lags=params.lags, gru=params.gru)
        if params.horizon:
            d.update(horizon=params.horizon, **{f"moves_N{params.horizon}": params.moves})
        return d

    def contains(self, params: NetParams, plant: Plant) -> bool:
        checks = [("kind", params.kind), ("depth", params.depth), ("width", params.width),
                  ("activation", params.activation), ("precision", params.precision)]
        if params.kind == "narx":
            checks += [("lags", params.lags), ("gru", params.gru)]
        if self.receding(plant, params.kind):
            checks += [("horizon", params.horizon), ("moves", params.moves)]
        return all(v in self.values(d) for d, v in checks)


def default_params(plant: Plant | None, kind: str | None = None) -> NetParams | None:
    """The net and controller settings ``nnmpc run`` uses for ``plant`` (its setup); None
    without a plant."""
    if plant is None:
        return None
    st = setup_for(plant, kind)
    rec = st.kind == "narx" or st.lag
    return NetParams(kind=st.kind, depth=len(st.hidden), width=st.hidden[0], activation="tanh",
                     lags=st.lags[0] if st.kind == "narx" else 0,
                     horizon=st.horizon if rec else 0, moves=min(st.moves, st.horizon) if rec
                     else 0)


def default_space(plant: Plant | None) -> SearchSpace:
    """Around the plant's default net: one and two hidden layers of 8 to 48 units, tanh or
    relu, the setup's horizon and one shorter and one longer, one or two moves. Without a
    plant (a log of an unknown plant): NARX nets with 2 lags, as `nnmpc train --data`."""
    if plant is None:
        return SearchSpace(
            dims={"kind": ["narx"], "depth": [1, 2], "width": [8, 12, 16, 24, 32, 48],
                  "activation": ["tanh", "relu"], "precision": ["float32"], "lags": [2],
                  "gru": [0], "horizon": [1], "moves": [1]}, train={})
    st = setup_for(plant)
    N = st.horizon
    return SearchSpace(
        dims={"kind": [st.kind], "depth": [1, 2], "width": [8, 12, 16, 24, 32, 48],
              "activation": ["tanh", "relu"], "precision": ["float32"],
              "lags": [st.lags[0] if st.kind == "narx" else 1], "gru": [0],
              "horizon": sorted({max(1, N - 1), N, min(MAX_HORIZON, N + 1)}),
              "moves": sorted({1, min(2, N), min(st.moves, N)})},
        train={})


# -- parsing and validation ---------------------------------------------------------------------
def _parse_flag(dim: str, text: str) -> Choices:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise NnmpcError(f"--{dim} '{text}': give one or more comma-separated values")
    if dim in INT_DIMENSIONS:
        try:
            return [int(t) for t in items]
        except ValueError:
            raise NnmpcError(f"--{dim} '{text}' is not a comma-separated list of integers") \
                from None
    return items


def _parse_toml_dim(dim: str, value, where: str):
    if isinstance(value, dict):
        if dim not in INT_DIMENSIONS:
            raise NnmpcError(f"{where}: {dim} is not an integer dimension: give a list")
        unknown = set(value) - {"low", "high", "step"}
        if unknown or not {"low", "high"} <= set(value):
            raise NnmpcError(f"{where}: {dim} = {{ low = ..., high = ..., step = ... }} "
                             f"(got {', '.join(sorted(value))})")
        try:
            r = IntRange(int(value["low"]), int(value["high"]), int(value.get("step", 1)))
        except (TypeError, ValueError):
            raise NnmpcError(f"{where}: {dim}: low, high and step must be integers") from None
        if r.step < 1 or r.high < r.low:
            raise NnmpcError(f"{where}: {dim}: needs low <= high and step >= 1")
        return r
    values = value if isinstance(value, list) else [value]
    if not values:
        raise NnmpcError(f"{where}: {dim} is an empty list")
    if dim in INT_DIMENSIONS and not all(isinstance(v, int) and not isinstance(v, bool)
                                         for v in values):
        raise NnmpcError(f"{where}: {dim} takes integers, got {values}")
    if dim not in INT_DIMENSIONS and not all(isinstance(v, str) for v in values):
        raise NnmpcError(f"{where}: {dim} takes strings, got {values}")
    return list(values)


def load_space_file(path: str | Path) -> SearchSpace:
    p = Path(path)
    if not p.is_file():
        raise NnmpcError(f"--space {p}: no such file")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise NnmpcError(f"--space {p}: not valid TOML: {e}") from None
    data = dict(data)
    train = data.pop("train", {})
    if "space" in data and isinstance(data["space"], dict):   # [space] table or top level
        data.update(data.pop("space"))
    unknown = sorted(set(data) - set(DIMENSIONS))
    if unknown:
        raise NnmpcError(f"--space {p}: unknown dimension '{unknown[0]}' "
                         f"(known: {', '.join(DIMENSIONS)}, and a [train] table)")
    if not isinstance(train, dict):
        raise NnmpcError(f"--space {p}: train must be a table ([train])")
    bad = sorted(set(train) - set(TRAIN_KEYS))
    if bad:
        raise NnmpcError(f"--space {p}: [train] has unknown key '{bad[0]}' "
                         f"(known: {', '.join(TRAIN_KEYS)})")
    dims = {k: _parse_toml_dim(k, v, f"--space {p}") for k, v in data.items()}
    return SearchSpace(dims, dict(train))


def make_space(plant: Plant | None, file: str | Path | None = None,
               flags: dict[str, str | None] | None = None,
               train: dict | None = None) -> SearchSpace:
    """The space of a sweep: the plant's default, then the TOML file's dimensions, then the
    dimension flags (comma-separated values); validated for ``plant``."""
    space = default_space(plant)
    if file is not None:
        f = load_space_file(file)
        space.dims.update(f.dims)
        space.train.update(f.train)
    for dim, text in (flags or {}).items():
        if text is not None:
            space.dims[dim] = _parse_flag(dim, text)
    space.train.update({k: v for k, v in (train or {}).items() if v is not None})
    validate(space, plant)
    return space


def validate(space: SearchSpace, plant: Plant | None) -> None:
    """Raise one clear line for the first value the sweep cannot run."""
    v = space.values
    for dim in DIMENSIONS:
        if dim not in space.dims:
            raise NnmpcError(f"search space: dimension '{dim}' is missing")
        if not v(dim):
            raise NnmpcError(f"search space: {dim} has no values")
    for k in v("kind"):
        if k not in KINDS:
            raise NnmpcError(f"search space: kind '{k}' is not one of {', '.join(KINDS)}")
        if plant is not None and plant.name not in SETUPS:
            raise NnmpcError(f"search space: plant '{plant.name}' has no closed-loop setup")
    for a in v("activation"):
        if a not in ACTIVATIONS:
            raise NnmpcError(f"search space: unknown activation '{a}' "
                             f"(known: {', '.join(ACTIVATIONS)})")
    for p in v("precision"):
        if p not in PRECISIONS:
            raise NnmpcError(f"search space: precision '{p}' is not one of "
                             f"{', '.join(PRECISIONS)}")
    for dim, lo, hi in (("depth", 1, 8), ("width", 1, 1024), ("lags", 1, MAX_LAGS),
                        ("horizon", 1, MAX_HORIZON), ("moves", 1, MAX_HORIZON),
                        ("gru", 0, 1024)):
        for x in v(dim):
            if not lo <= x <= hi:
                raise NnmpcError(f"search space: {dim} {x} is out of range ({lo} to {hi})")
    if any(v("gru")) and "narx" not in v("kind"):
        raise NnmpcError(f"search space: gru {max(v('gru'))}: GRU units apply to kind narx "
                         f"only (kind {', '.join(v('kind'))}); give gru = [0] or add narx")
    rec = [k for k in v("kind") if space.receding(plant, k)]
    if rec and min(v("moves")) > max(v("horizon")):
        raise NnmpcError(f"search space: every moves value exceeds every horizon "
                         f"(moves {v('moves')}, horizon {v('horizon')}): Nc <= N")
    for key, val in space.train.items():
        if key not in TRAIN_KEYS:
            raise NnmpcError(f"search space: [train] has unknown key '{key}'")
        ok = val > 0 if key == "lr" else isinstance(val, int) and val >= 1
        if not ok:
            raise NnmpcError(f"search space: [train] {key} = {val} must be a positive "
                             + ("number" if key == "lr" else "integer"))
