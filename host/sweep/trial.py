"""One trial of a sweep: train the net, compile it, check it against the board's flash and RAM,
count the controller's worst period on the instruction counter, and close the loop.

The data is a simulated plant's (``--plant``) or a log's (``--data``, through
:func:`..learn.pipeline.log_job`, the data half of `nnmpc train --data`). A log of a known
plant whose columns are the plant's inputs and outputs at its sample period is closed in the
loop on that plant's simulator, as ``--plant``; any other log is scored by replaying its
held-out segments through the host build of the same generated C (:mod:`.hostc`). int8 trials
are trained, exported and compiled as full-integer nets and pruned with their figures: the
compiler gives int8 nets no Jacobian, which the Newton MPC needs. GRU trials put the GRU
behind a fixed selection layer that reads the controller's NARX lags.

Every stage reuses the stage of the pipeline that does it: :mod:`..learn` (data and training),
the compiler (C and its cost report), :mod:`..build` (the board's size check and the emulated
board's firmware), :mod:`..bench.loopcount` (cycles per period with the time budget on the
board's clock) and :mod:`..loop` (the closed loop on the emulated board).
"""

from __future__ import annotations

import base64
import json
import math
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..build.boards import Board, load_board
from ..errors import NnmpcError
from ..plants import Plant
from ..loop.setups import setup_for
from .space import INT8_NO_MPC, NetParams

#: What a trial's ``tracking`` objective is: the closed loop, or the replay of the held-out log.
SCORE_LOOP = "closed loop"
SCORE_REPLAY = "replay"

#: The board the closed loop runs on when the target board is not emulated (same C core).
EMULATED_BOARD = "qemu-m4f"


class DoesNotFit(Exception):
    """The trial's net cannot fit the board: the trial is pruned, with the reason."""

    def __init__(self, reason: str, attrs: dict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attrs = attrs or {}


class NoController(DoesNotFit):
    """The trial's net cannot drive the controller (int8): pruned, with its figures."""


@dataclass
class LogSource:
    """``--data``: the log and its columns (`nnmpc train --data`'s --inputs/--outputs)."""

    path: Path
    inputs: tuple[str, ...] = ("u_*",)
    outputs: tuple[str, ...] = ("y_*",)


@dataclass
class CoreBaseline:
    """The firmware core without the net's weights and arena, measured once on the target
    board from a one-unit net: the compile report's flash and RAM of a trial's net on top of
    it say, before training, whether the net can fit."""

    flash: int
    ram: int


@dataclass
class SweepContext:
    plant: Plant | None          # the simulator of the closed loop (None: a log's replay)
    target: Board
    rate_hz: float
    references: tuple[str, ...] = ("step", "sine")
    duration: float | None = None           # closed-loop seconds per reference (None: setup's)
    count_periods: int = 200
    budget_fraction: float = 0.9
    train: dict = field(default_factory=dict)
    seed: int = 0
    work: Path = Path("build/sweep/trials")
    baseline: CoreBaseline | None = None
    log: LogSource | None = None
    _datasets: dict = field(default_factory=dict)
    _describe: dict = field(default_factory=dict)

    @property
    def score(self) -> str:
        return SCORE_LOOP if self.plant is not None else SCORE_REPLAY

    @property
    def name(self) -> str:
        return self.plant.name if self.plant is not None else Path(self.log.path).stem

    @property
    def units(self) -> str:
        """The unit of the tracking objective (the first tracked output; a log: the first
        output's)."""
        if self.plant is not None:
            return self.plant.outputs[setup_for(self.plant).tracked[0]].unit
        outs = self.describe("narx", 1).get("outputs") or [{}]
        return outs[0].get("unit", "")

    @property
    def emulated(self) -> Board:
        return self.target if self.target.emulated else load_board(EMULATED_BOARD)

    @property
    def period_cycles(self) -> int:
        return int(self.target.clock_hz / self.rate_hz)

    @property
    def budget_us(self) -> int:
        """The solver's time budget: a fraction of the period (the rest: I/O, telemetry)."""
        return max(1, int(self.budget_fraction * 1e6 / self.rate_hz))

    def train_value(self, key: str, kind: str):
        if self.plant is not None:
            st = setup_for(self.plant, kind)
            epochs, samples = st.epochs, st.samples
        else:
            from ..plants import NetSpec
            epochs, samples = NetSpec(kind).epochs, 0
        defaults = {"epochs": epochs, "samples": samples, "patience": 25,
                    "batch_size": 64, "lr": 3e-3}
        return self.train.get(key, defaults[key])

    def dataset(self, kind: str, lags: int):
        """The trial's data: simulated (the plant's) or from the log (`nnmpc train --data`'s
        reading, columns, fk input lag and contiguous-segment split)."""
        if self.log is not None:
            import contextlib
            import io

            from ..learn.pipeline import TrainOptions, log_job

            key = ("log", kind, lags if kind == "narx" else 0)
            if key not in self._datasets:
                o = TrainOptions(data=Path(self.log.path), kind=kind, seed=self.seed,
                                 lags=(lags, lags) if kind == "narx" else None,
                                 inputs=tuple(self.log.inputs),
                                 outputs=tuple(self.log.outputs))
                with contextlib.redirect_stdout(io.StringIO()):
                    job = log_job(o)
                self._datasets[key], self._describe[key] = job.ds, job.describe
            return self._datasets[key]
        from ..learn.datasets import make_dataset

        samples = self.train_value("samples", kind)
        key = (kind, lags, samples, self.seed)
        if key not in self._datasets:
            self._datasets[key] = make_dataset(self.plant, kind, samples, seed=self.seed,
                                               lags=(lags, lags) if kind == "narx" else (2, 2))
        return self._datasets[key]

    def describe(self, kind: str, lags: int) -> dict:
        """The metadata of the trial's data (the plant's, or the log's as `train --data`)."""
        if self.log is None:
            return self.plant.describe()
        self.dataset(kind, lags)
        return self._describe[("log", kind, lags if kind == "narx" else 0)]


def closed_loop_plant(log: LogSource) -> tuple[str | None, str]:
    """The simulated plant a log's trials close the loop on, and why (or why not): the plant
    the log's metadata names, if it has a closed-loop setup, the selected columns are its
    inputs and outputs in its order, and the log's period is the plant's sample period."""
    from ..learn.logs import read_log, strip_prefix
    from ..loop.setups import SETUPS
    from ..plants import PLANTS, get_plant

    table = read_log(Path(log.path))
    ins = [strip_prefix(c) for c in table.select(list(log.inputs), "--inputs")]
    outs = [strip_prefix(c) for c in table.select(list(log.outputs), "--outputs")]
    name = table.meta.get("plant")
    if not isinstance(name, str) or name not in PLANTS:
        return None, "the log names no known plant"
    plant = get_plant(name)
    if name not in SETUPS:
        return None, f"plant '{name}' has no closed-loop setup"
    if ins != [s.name for s in plant.inputs] or outs != [s.name for s in plant.outputs]:
        return None, (f"the selected columns ({', '.join(ins)} -> {', '.join(outs)}) are not "
                      f"plant '{name}''s inputs and outputs")
    if abs(table.dt() - plant.dt) > 1e-6 * plant.dt + 1e-9:
        return None, (f"the log's period {table.dt():g} s is not plant '{name}''s sample "
                      f"period {plant.dt:g} s")
    return name, f"the log is of plant '{name}': closed loop on its simulator"


def count_reference(plant: Plant, periods: int) -> np.ndarray:
    """The step reference with every level held ``periods / levels`` periods: the start and
    every step of the plant's reference (where the solver works hardest) in few periods."""
    st = setup_for(plant)
    hold = max(1, periods // len(st.step_levels))
    rows = np.zeros((hold * len(st.step_levels), len(plant.outputs)))
    for i, level in enumerate(st.step_levels):
        rows[i * hold:(i + 1) * hold, list(st.tracked)] = level
    return rows


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- the compile report before training ---------------------------------------------------------
def report_sizes(keras_path: Path) -> tuple[int, int]:
    """(weights flash bytes, arena RAM bytes) of a model from the compiler's cost report."""
    from nnmpc.compiler import load_model
    from nnmpc.compiler.backend.emit import lower
    from nnmpc.compiler.backend.report import layer_costs
    from nnmpc.compiler.passes import optimise

    graph = optimise(load_model(keras_path))
    return sum(r.flash_bytes for r in layer_costs(graph)), lower(graph, "model").arena_bytes


def window_matrix(n_out: int, n_in: int, window: int) -> np.ndarray:
    """The 0/1 matrix that takes NARX features ``[y[k..k-w+1], u[k..k-w+1]]`` (the layout the
    controller builds) to a GRU's window of ``[y[t], u[t]]`` rows, oldest first, flattened."""
    step = n_out + n_in
    P = np.zeros((window * step, window * step), np.float32)
    for r in range(window):
        i = window - 1 - r                      # row r of the window is time k - i
        for f in range(step):
            src = i * n_out + f if f < n_out else window * n_out + i * n_in + (f - n_out)
            P[src, r * step + f] = 1.0
    return P


def to_windows(x: np.ndarray, n_out: int, window: int) -> np.ndarray:
    """NARX features (N, w (p + m)) as GRU windows (N, w, p + m)."""
    step = x.shape[1] // window
    P = window_matrix(n_out, step - n_out, window)
    return (np.asarray(x, np.float32) @ P).reshape(len(x), window, step)


def narx_gru(n_out: int, n_in: int, window: int, units: int, hidden, activation: str,
             trained=None):
    """A GRU net that takes the controller's NARX features: a bias-free Dense holding
    :func:`window_matrix` (fixed), a Reshape to the window, the GRU (unrolled) and the Dense
    layers; with ``trained`` (a :func:`..learn.train.gru_net`, raw units) its weights."""
    from ..learn.mlenv import import_keras

    keras = import_keras()
    n = window * (n_out + n_in)
    x = inp = keras.Input((n,), name="u")
    x = keras.layers.Dense(n, use_bias=False, name="window")(x)
    x = keras.layers.Reshape((window, n_out + n_in), name="rows")(x)
    x = keras.layers.GRU(units, unroll=True, name="gru")(x)
    for i, h in enumerate(hidden):
        x = keras.layers.Dense(h, activation=activation, name=f"hidden{i + 1}")(x)
    out = keras.layers.Dense(n_out, name="out")(x)
    model = keras.Model(inp, out, name="model")
    model.get_layer("window").set_weights([window_matrix(n_out, n_in, window)])
    if trained is not None:
        for layer in model.layers:
            if layer.name not in ("u", "window", "rows") and layer.get_weights():
                layer.set_weights(trained.get_layer(layer.name).get_weights())
    return model


def _n_io(ds, p: NetParams) -> tuple[int, int, int]:
    """(outputs, inputs of the plant, feature count) of a trial's data."""
    n_out, n_feat = ds.y_train.shape[1], ds.x_train.shape[1]
    n_in = n_feat // p.lags - n_out if p.kind == "narx" else n_feat
    return n_out, n_in, n_feat


def _untrained(ctx: SweepContext, p: NetParams, path: Path) -> Path:
    from ..learn.train import mlp

    ds = ctx.dataset(p.kind, p.lags)
    n_out, n_in, n_feat = _n_io(ds, p)
    if p.gru:
        narx_gru(n_out, n_in, p.lags, p.gru, list(p.hidden), p.activation).save(path)
    else:
        mlp(n_feat, n_out, list(p.hidden), p.activation).save(path)
    return path


def train_net(ctx: SweepContext, p: NetParams, ds):
    """Train the trial's net with the fixed seed; (TrainResult, raw-units Keras model that
    takes the controller's features)."""
    from ..learn.train import train_gru, train_mlp

    kw = dict(hidden=p.hidden, activation=p.activation, epochs=ctx.train_value("epochs", p.kind),
              seed=ctx.seed, patience=ctx.train_value("patience", p.kind),
              batch_size=ctx.train_value("batch_size", p.kind),
              lr=ctx.train_value("lr", p.kind), name="model")
    if not p.gru:
        res = train_mlp(ds.x_train, ds.y_train, ds.x_val, ds.y_val, **kw)
        return res, res.model
    n_out, n_in, _ = _n_io(ds, p)
    res = train_gru(to_windows(ds.x_train, n_out, p.lags), ds.y_train,
                    to_windows(ds.x_val, n_out, p.lags), ds.y_val, units=p.gru, **kw)
    return res, narx_gru(n_out, n_in, p.lags, p.gru, list(p.hidden), p.activation, res.model)


def core_baseline(ctx: SweepContext, kind: str) -> CoreBaseline:
    """Measure the core once: a 1-unit net built for the target board, minus its report."""
    from nnmpc.compiler import compile_model

    from ..build.sizecheck import build_core

    with tempfile.TemporaryDirectory(prefix="nnmpc-sweep-") as tmp:
        tmp = Path(tmp)
        p = NetParams(kind=kind, depth=1, width=1, activation="linear",
                      lags=1 if kind == "narx" else 0)
        k = _untrained(ctx, p, tmp / "one.keras")
        w, a = report_sizes(k)
        compile_model(k, tmp / "model", name="model")
        core = build_core(ctx.target, tmp / "model", tmp / "core")
    return CoreBaseline(core.size.flash - w, core.size.ram - a)


def precheck(ctx: SweepContext, p: NetParams, out: Path) -> dict:
    """Flash and RAM the net will need on the target board, from the compile report of the
    untrained net on top of the core; :class:`DoesNotFit` if over the budget."""
    if ctx.baseline is None:
        ctx.baseline = core_baseline(ctx, p.kind)
    w, a = report_sizes(_untrained(ctx, p, out / "untrained.keras"))
    (out / "untrained.keras").unlink(missing_ok=True)
    flash, ram = ctx.baseline.flash + w, ctx.baseline.ram + a
    b = ctx.target
    attrs = {"estimate_flash": flash, "estimate_ram": ram, "weights_bytes": w, "arena_bytes": a}
    over = []
    if flash > b.flash_bytes:
        over.append(f"flash about {flash} B of {b.flash_bytes} B ({w} B of weights)")
    if ram > b.ram_bytes:
        over.append(f"RAM about {ram} B of {b.ram_bytes} B ({a} B of arena)")
    if over:
        raise DoesNotFit(f"does not fit {b.name} (compile report, before training): "
                         + "; ".join(over), {**attrs, "pruned_stage": "report"})
    return attrs


# -- one trial ----------------------------------------------------------------------------------
def _geomean(values: list[float]) -> float:
    v = [max(float(x), 1e-12) for x in values]
    return float(math.exp(sum(math.log(x) for x in v) / len(v)))


def icount_for(cycles: int, instructions: int, clock_hz: int) -> tuple[int, float]:
    """QEMU's ``-icount`` shift closest to the board's time per instruction (from the counted
    cycles per instruction at its clock), and the factor that corrects a time budget for the
    rounding to a power of two: QEMU then stops the solver after the same instruction count
    as the board would."""
    ns = max(cycles, 1) / max(instructions, 1) * 1e9 / clock_hz
    shift = max(0, min(10, round(math.log2(ns))))
    return shift, (2 ** shift) / ns


def _rmse(pred, true) -> list[float]:
    e = np.asarray(pred, float) - np.asarray(true, float)
    return [float(v) for v in np.sqrt((e.reshape(-1, e.shape[-1]) ** 2).mean(axis=0))]


def replay(ctx: SweepContext, p: NetParams, model_dir: Path, ds, out: Path) -> dict:
    """The held-out part of the data through the host build of the generated C: one step
    (every held-out row's features, the logged ones) and, for NARX nets, open loop (the net
    fed its own outputs from the first window of each held-out segment, the logged inputs)."""
    from .hostc import HostNet, free_run

    net = HostNet(model_dir, out / "host")
    one = _rmse(net.predict(ds.x_val), ds.y_val)
    rec = {"replay_one_step_rmse": one}
    if p.kind == "narx":
        pred, true = free_run(net, ds, p.lags)
        rec["replay_free_run_rmse"] = _rmse(pred, true)
        rec["replay_periods"] = int(pred.shape[0] * pred.shape[1])
    rec["replay"] = _geomean(rec.get("replay_free_run_rmse", one))
    return rec


def _bench_images(ctx: SweepContext, model_dir: Path, out: Path, n_in: int, n_out: int,
                  jacobian: bool):
    from ..bench.netbench import build_images
    from ..build.firmware import cflags

    return build_images(out.name, "model", sorted(model_dir.glob("*.c")), [model_dir], n_in,
                        n_out, out, cflags(ctx.target, "-O2"), jacobian=jacobian)


def _counted(ctx: SweepContext) -> bool:
    """Whether the instruction counter (a Cortex-M4 model) counts the target's code."""
    return "cortex-m4" in ctx.target.core.lower()


def net_call_cycles(ctx: SweepContext, model_dir: Path, out: Path, xs, n_out: int) -> dict:
    """Without a plant to close the loop with: the estimated Cortex-M4 cycles of one
    ``model_jacobian`` call (forward pass and Jacobian) on held-out inputs, the cheapest
    part of every period (a lower bound of the period, not a period)."""
    from ..bench.netbench import run_calls

    xs = np.asarray(xs[:8], np.float32)
    imgs = _bench_images(ctx, model_dir, out / "bench", xs.shape[1], n_out, True)
    s = run_calls(imgs.full, "model", xs, n_out)["summary"]["jacobian"]
    return {"cycles_max": int(s["cycles_est_max"]), "cycles_mean": int(s["cycles_est"]),
            "cycles_p99": int(s["cycles_est_max"]), "stack_bytes": int(s["stack_bytes"]),
            "count_periods": int(len(xs)), "periods_stopped_by_budget": 0}


def int8_trial(ctx: SweepContext, p: NetParams, model, ds, model_dir: Path, out: Path,
               rec: dict) -> dict:
    """The figures of an int8 trial: the full-integer TFLite export (as `nnmpc train`'s
    ``_int8.tflite``: int8 weights, activations and I/O, calibrated on training rows) compiled
    to C; its flash beside the float net's (predict-only images for the target's flags, the
    empty image subtracted: the model's code and constants), its validation RMSE through the
    host build of the int8 C, and (Cortex-M4 targets) its predict cycles."""
    from nnmpc.compiler import compile_model

    from ..bench.netbench import run_calls, size_delta
    from ..learn.export import representative_subset, tflite_bytes

    n_out = ds.y_train.shape[1]
    n_feat = ds.x_train.shape[1]
    rep = representative_subset(ds.x_train, 200, seed=ctx.seed, y=ds.y_train)
    tfl = out / "model_int8.tflite"
    tfl.write_bytes(tflite_bytes(model, rep))
    q_dir = out / "model_int8"
    compile_model(tfl, q_dir, name="model")
    from .hostc import HostNet

    y8 = HostNet(q_dir, out / "host_int8").predict(ds.x_val)
    q = _bench_images(ctx, q_dir, out / "bench_int8", n_feat, n_out, False)
    f = _bench_images(ctx, model_dir, out / "bench_float", n_feat, n_out, False)
    fig = {"int8_val_rmse": _rmse(y8, ds.y_val),
           "int8_model_flash": size_delta(q.predict, q.empty_predict)["flash"],
           "float_model_flash": size_delta(f.predict, f.empty_predict)["flash"],
           "int8_tflite_bytes": tfl.stat().st_size}
    fig["int8_val_rmse_mean"] = float(np.mean(fig["int8_val_rmse"]))
    if _counted(ctx):
        xs = np.asarray(ds.x_val[:8], np.float32)
        fig["int8_predict_cycles"] = int(run_calls(q.predict, "model", xs, n_out,
                                                   jacobian=False)["summary"]["predict"]
                                         ["cycles_est_max"])
    return fig


def evaluate(ctx: SweepContext, p: NetParams, out: Path, stage=lambda name: None) -> dict:
    """Run every stage of one trial in ``out``; return its figures (a dict for the study's
    user attributes). Raises :class:`DoesNotFit` when the net cannot fit the board and
    :class:`NoController` (int8) after the figures an int8 net has."""
    from nnmpc.compiler import compile_model

    from ..bench.loopcount import count_loop
    from ..build.firmware import build_firmware
    from ..build.sizecheck import build_core
    from ..loop.closedloop import run_on_board
    from ..loop.nets import prepare_model
    from ..loop.runlog import write_csv

    out.mkdir(parents=True, exist_ok=True)
    rec: dict = {"net": p.describe(), "worker": worker_id(), "score": ctx.score}
    secs: dict = {}
    t0 = time.monotonic()

    stage("report")
    rec.update(precheck(ctx, p, out))
    secs["report"] = time.monotonic() - t0

    stage("train")
    t = time.monotonic()
    ds = ctx.dataset(p.kind, p.lags)
    res, model = train_net(ctx, p, ds)
    keras_path = out / "model.keras"
    model.save(keras_path)
    rec.update(val_rmse=[float(v) for v in res.val_rmse],
               val_rmse_mean=float(np.mean(res.val_rmse)), epochs_run=int(res.epochs),
               n_params=int(sum(np.prod(w.shape) for w in model.get_weights())))
    secs["train"] = time.monotonic() - t

    stage("compile")
    t = time.monotonic()
    model_dir = out / "model"
    compile_model(keras_path, model_dir, name="model")
    secs["compile"] = time.monotonic() - t

    if p.precision == "int8":
        stage("int8")
        t = time.monotonic()
        rec.update(int8_trial(ctx, p, model, ds, model_dir, out, rec))
        secs["int8"] = time.monotonic() - t
        rec["seconds"] = {k: round(v, 2) for k, v in secs.items()}
        (out / "trial.json").write_text(json.dumps(rec, indent=2) + "\n")
        raise NoController(
            f"{INT8_NO_MPC}; int8 model {rec['int8_model_flash']:,} B flash (float "
            f"{rec['float_model_flash']:,} B), val RMSE {rec['int8_val_rmse_mean']:.4g} (float "
            f"{rec['val_rmse_mean']:.4g})", {**rec, "pruned_stage": "int8"})

    if ctx.log is not None:
        stage("replay")
        t = time.monotonic()
        rec.update(replay(ctx, p, model_dir, ds, out))
        secs["replay"] = time.monotonic() - t

    stage("size")
    t = time.monotonic()
    try:
        core = build_core(ctx.target, model_dir, out / "core")
    except NnmpcError as e:
        if "fit" in str(e) or "budget" in str(e):
            raise DoesNotFit(f"does not fit: {e}", {**rec, "pruned_stage": "build"}) from None
        raise
    rec.update(flash=int(core.size.flash), ram=int(core.size.ram),
               flash_budget=ctx.target.flash_bytes, ram_budget=ctx.target.ram_bytes)
    secs["size"] = time.monotonic() - t

    stage("cycles")
    t = time.monotonic()
    if ctx.plant is None:
        c = net_call_cycles(ctx, model_dir, out, ds.x_val, ds.y_val.shape[1])
        rec.update(c, cycles_measure="net call", period_cycles=ctx.period_cycles,
                   budget_us=ctx.budget_us,
                   fits_period=bool(c["cycles_max"] <= ctx.period_cycles))
        rec["tracking"] = rec["replay"]
        secs["cycles"] = time.monotonic() - t
        return _done(rec, secs, t0, keras_path, out)
    img = build_firmware(ctx.emulated, model_dir, out / "fw")
    net = prepare_model(ctx.plant, str(model_dir), out)
    kw = dict(horizon=p.horizon or None, moves=p.moves or None)
    c = count_loop(ctx.plant.name, "nr", net, img, ctx.count_periods, ctx.budget_us,
                   clock_hz=ctx.target.clock_hz,
                   refs=count_reference(ctx.plant, ctx.count_periods), **kw)
    rec.update(cycles_max=int(c["cycles_max"]), cycles_mean=int(c["cycles_mean"]),
               cycles_p99=int(c["cycles_p99"]), period_cycles=ctx.period_cycles,
               budget_us=ctx.budget_us, count_periods=int(c["periods"]),
               periods_stopped_by_budget=int(c["periods_stopped_by_budget"]),
               stack_bytes=int(c["stack_bytes_max"]), cycles_measure="period",
               fits_period=bool(c["cycles_max"] <= ctx.period_cycles))
    secs["cycles"] = time.monotonic() - t

    stage("loop")
    t = time.monotonic()
    shift, scale = icount_for(c["cycles_mean"], c["instructions_mean"], ctx.target.clock_hz)
    qemu_budget = max(1, int(round(ctx.budget_us * scale)))
    rec.update(icount_shift=shift, qemu_budget_us=qemu_budget)
    errors, loops = [], {}
    for ref in ctx.references:
        r = run_on_board(ctx.plant.name, "nr", ref, built=(net, img), work=out,
                         duration=ctx.duration, seed=ctx.seed, log=lambda *a: None,
                         budget_us=qemu_budget, icount=shift, **kw)
        write_csv(r.log, out / f"loop_{Path(ref).stem}.csv")
        s = r.summary
        loops[ref] = {k: s[k] for k in ("tracking_rms", "path_error_rms", "path_error_max",
                                        "iterations_mean", "lost_frames", "periods")
                      if k in s}
        loops[ref]["stopped_by_budget"] = int(s["status_counts"].get("time budget", 0))
        errors.append(s["tracking_rms"])
    rec["loops"] = loops
    rec["tracking"] = _geomean(errors)
    pe = [v["path_error_rms"] for v in loops.values() if "path_error_rms" in v]
    if pe:
        rec["path_error"] = _geomean(pe)
    secs["loop"] = time.monotonic() - t
    return _done(rec, secs, t0, keras_path, out)


def _done(rec: dict, secs: dict, t0: float, keras_path: Path, out: Path) -> dict:
    secs["total"] = time.monotonic() - t0
    rec["seconds"] = {k: round(v, 2) for k, v in secs.items()}
    rec["model_keras_b64"] = base64.b64encode(keras_path.read_bytes()).decode("ascii")
    (out / "trial.json").write_text(json.dumps(
        {k: v for k, v in rec.items() if k != "model_keras_b64"}, indent=2) + "\n")
    return rec
