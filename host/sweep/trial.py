"""One trial of a sweep: train the net, compile it, check it against the board's flash and RAM,
count the controller's worst period on the instruction counter, and close the loop.

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
from .space import NetParams

#: The board the closed loop runs on when the target board is not emulated (same C core).
EMULATED_BOARD = "qemu-m4f"


class DoesNotFit(Exception):
    """The trial's net cannot fit the board: the trial is pruned, with the reason."""

    def __init__(self, reason: str, attrs: dict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attrs = attrs or {}


@dataclass
class CoreBaseline:
    """The firmware core without the net's weights and arena, measured once on the target
    board from a one-unit net: the compile report's flash and RAM of a trial's net on top of
    it say, before training, whether the net can fit."""

    flash: int
    ram: int


@dataclass
class SweepContext:
    plant: Plant
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
    _datasets: dict = field(default_factory=dict)

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
        st = setup_for(self.plant, kind)
        defaults = {"epochs": st.epochs, "samples": st.samples, "patience": 25,
                    "batch_size": 64, "lr": 3e-3}
        return self.train.get(key, defaults[key])

    def dataset(self, kind: str, lags: int):
        from ..learn.datasets import make_dataset

        samples = self.train_value("samples", kind)
        key = (kind, lags, samples, self.seed)
        if key not in self._datasets:
            self._datasets[key] = make_dataset(self.plant, kind, samples, seed=self.seed,
                                               lags=(lags, lags) if kind == "narx" else (2, 2))
        return self._datasets[key]


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


def _untrained(ctx: SweepContext, p: NetParams, path: Path) -> Path:
    from ..learn.train import mlp

    ds = ctx.dataset(p.kind, p.lags)
    mlp(ds.x_train.shape[1], ds.y_train.shape[1], list(p.hidden), p.activation).save(path)
    return path


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


def evaluate(ctx: SweepContext, p: NetParams, out: Path, stage=lambda name: None) -> dict:
    """Run every stage of one trial in ``out``; return its figures (a dict for the study's
    user attributes). Raises :class:`DoesNotFit` when the net cannot fit the board."""
    from nnmpc.compiler import compile_model

    from ..bench.loopcount import count_loop
    from ..build.firmware import build_firmware
    from ..build.sizecheck import build_core
    from ..learn.train import train_mlp
    from ..loop.closedloop import run_on_board
    from ..loop.nets import prepare_model
    from ..loop.runlog import write_csv

    out.mkdir(parents=True, exist_ok=True)
    rec: dict = {"net": p.describe(), "worker": worker_id()}
    secs: dict = {}
    t0 = time.monotonic()

    stage("report")
    rec.update(precheck(ctx, p, out))
    secs["report"] = time.monotonic() - t0

    stage("train")
    t = time.monotonic()
    ds = ctx.dataset(p.kind, p.lags)
    res = train_mlp(ds.x_train, ds.y_train, ds.x_val, ds.y_val, hidden=p.hidden,
                    activation=p.activation, epochs=ctx.train_value("epochs", p.kind),
                    seed=ctx.seed, patience=ctx.train_value("patience", p.kind),
                    batch_size=ctx.train_value("batch_size", p.kind),
                    lr=ctx.train_value("lr", p.kind), name="model")
    keras_path = out / "model.keras"
    res.model.save(keras_path)
    rec.update(val_rmse=[float(v) for v in res.val_rmse],
               val_rmse_mean=float(np.mean(res.val_rmse)), epochs_run=int(res.epochs),
               n_params=int(sum(np.prod(w.shape) for w in res.model.get_weights())))
    secs["train"] = time.monotonic() - t

    stage("compile")
    t = time.monotonic()
    model_dir = out / "model"
    compile_model(keras_path, model_dir, name="model")
    secs["compile"] = time.monotonic() - t

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
               stack_bytes=int(c["stack_bytes_max"]),
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
    secs["total"] = time.monotonic() - t0
    rec["seconds"] = {k: round(v, 2) for k, v in secs.items()}
    rec["model_keras_b64"] = base64.b64encode(keras_path.read_bytes()).decode("ascii")
    (out / "trial.json").write_text(json.dumps(
        {k: v for k, v in rec.items() if k != "model_keras_b64"}, indent=2) + "\n")
    return rec
