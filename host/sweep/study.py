"""`nnmpc sweep` as a function: an Optuna study over the search space, one or many workers.

The study lives in an Optuna storage: by default a SQLite file in the output folder (resumable
with ``resume``), or any database URL (PostgreSQL) that several workers on one or many machines
open at once; Optuna hands each worker its own trials (its own distributed mode: no
scheduler here). A worker that dies mid-trial stops its heartbeat: the others mark that trial
failed after the grace period, and nothing else is lost.

Objectives (all minimised): closed-loop tracking error, the worst period's estimated Cortex-M4
cycles, and flash. Constraints: the worst period within the control period of the rate on the
board's clock, flash and RAM within the board's budget. A net that cannot fit the board is
pruned: before training when the compiler's cost report already shows it, else after the size
check.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..build.boards import load_board
from ..errors import NnmpcError
from ..plants import get_plant
from ..progress import Progress
from ..toolchain import require
from . import report as rep
from .storage import _one_line, _study_names, open_storage, redact
from .space import NetParams, SearchSpace, default_params, make_space
from .trial import DoesNotFit, LogSource, SweepContext, closed_loop_plant, evaluate, worker_id

DEFAULT_STUDY = "sweep"
MAX_FAILURES_IN_A_ROW = 3
#: The settings a study is made with; every worker and every resumed run uses the same.
CONFIG_KEYS = ("plant", "data", "inputs", "outputs", "score", "board", "rate_hz",
               "references", "duration", "count_periods", "budget_fraction", "seed", "space")


@dataclass
class SweepOptions:
    """What to sweep; ``None`` takes the study's setting (joining or resuming) or the default."""

    plant: str | None = None
    data: Path | None = None
    inputs: tuple[str, ...] | None = None   # --data: log columns (default u_*, y_*)
    outputs: tuple[str, ...] | None = None
    board: str | None = None              # default qemu-m4f
    rate_hz: float | None = None          # default 1000
    trials: int = 20
    out: Path = Path("build/sweep")
    storage: str | None = None
    study: str | None = None
    resume: bool = False
    space_file: Path | None = None
    space_flags: dict = field(default_factory=dict)   # dimension -> "a,b,c"
    train: dict = field(default_factory=dict)         # epochs, samples, patience, ...
    references: tuple[str, ...] | None = None         # default step, sine
    duration: float | None = None
    count_periods: int | None = None                  # default 200
    budget_fraction: float | None = None              # default 0.9
    seed: int | None = None                           # default 0
    tolerance: float = 0.0
    baseline: bool = True                             # enqueue the plant's default net first
    export: bool = True


@dataclass
class SweepResult:
    study: str
    storage: str
    trials: list
    front: list
    chosen: object
    table: str
    csv: Path
    png: Path
    best: Path | None
    interrupted: bool = False
    aborted: str | None = None
    added: int = 0
    ctx: SweepContext | None = None


# -- configuration --------------------------------------------------------------------------
def _requested(o: SweepOptions) -> dict:
    """The settings this run asks for explicitly (None: not asked)."""
    return {"plant": o.plant, "data": str(Path(o.data).resolve()) if o.data else None,
            "inputs": list(o.inputs) if o.inputs else None,
            "outputs": list(o.outputs) if o.outputs else None,
            "board": o.board, "rate_hz": o.rate_hz,
            "references": list(o.references) if o.references else None,
            "duration": o.duration, "count_periods": o.count_periods,
            "budget_fraction": o.budget_fraction, "seed": o.seed}


def _check_settings(o: SweepOptions) -> None:
    if o.data is not None and o.plant is not None:
        raise NnmpcError("--plant and --data exclude each other: the data comes from the log "
                         "(its metadata may name the plant)")
    if o.data is None and (o.inputs or o.outputs):
        raise NnmpcError("--inputs and --outputs pick columns of a log: they need --data")
    if o.trials < 1:
        raise NnmpcError(f"--trials {o.trials}: must be at least 1")
    if o.rate_hz is not None and not o.rate_hz > 0:
        raise NnmpcError(f"--rate-hz {o.rate_hz}: must be positive")
    if o.budget_fraction is not None and not 0 < o.budget_fraction <= 1:
        raise NnmpcError(f"--budget-fraction {o.budget_fraction}: must be in (0, 1]")
    if o.count_periods is not None and o.count_periods < 1:
        raise NnmpcError(f"--count-periods {o.count_periods}: must be at least 1")
    if o.duration is not None and not o.duration > 0:
        raise NnmpcError(f"--duration {o.duration}: must be positive")
    if o.tolerance < 0:
        raise NnmpcError(f"--tolerance {o.tolerance}: must not be negative")
    for ref in o.references or ():
        if ref not in ("step", "sine"):
            raise NnmpcError(f"--references: '{ref}' is not one of step, sine")


def _config(o: SweepOptions, stored: dict | None) -> dict:
    """The study's settings: stored ones (a joined or resumed study; a different explicit
    request is an error), else this run's with defaults filled in."""
    asked = _requested(o)
    if stored is not None:
        for k, v in asked.items():
            if v is not None and stored.get(k) != v:
                raise NnmpcError(f"study was made with {k} = {stored.get(k)!r}; this run asks "
                                 f"for {v!r} (every worker and resumed run uses the study's "
                                 "settings: leave the option out, or use another --study)")
        if o.space_file is not None or any(v is not None for v in o.space_flags.values()) \
                or o.train:
            plant = get_plant(stored["plant"]) if stored.get("plant") else None
            space = make_space(plant, o.space_file, o.space_flags, o.train).to_dict()
            if space != stored["space"]:
                raise NnmpcError("study was made with another search space; leave the space "
                                 "options out to use the study's, or use another --study")
        return stored
    if not o.plant and o.data is None:
        raise NnmpcError("give the plant to sweep (--plant) or a log (--data), or --resume an "
                         "existing study")
    plant, score = _source(o)
    space = make_space(plant, o.space_file, o.space_flags, o.train)
    board = load_board(o.board or "qemu-m4f")
    return {"plant": plant.name if plant else None, **_log_config(o), "score": score,
            "board": o.board or board.name,
            "rate_hz": float(o.rate_hz or 1000.0),
            "references": list(o.references or ("step", "sine")), "duration": o.duration,
            "count_periods": int(o.count_periods or 200),
            "budget_fraction": float(o.budget_fraction or 0.9), "seed": int(o.seed or 0),
            "space": space.to_dict()}


def _log_config(o: SweepOptions) -> dict:
    if o.data is None:
        return {"data": None, "inputs": None, "outputs": None}
    return {"data": str(Path(o.data).resolve()), "inputs": list(o.inputs or ("u_*",)),
            "outputs": list(o.outputs or ("y_*",))}


def _source(o: SweepOptions):
    """(the plant whose simulator closes the loop or None, what the trials are scored by)."""
    if o.data is None:
        return get_plant(o.plant), "closed loop"
    log = LogSource(Path(o.data), tuple(o.inputs or ("u_*",)), tuple(o.outputs or ("y_*",)))
    name, why = closed_loop_plant(log)
    if name is not None:
        return get_plant(name), f"closed loop ({why})"
    return None, (f"replay of the held-out log through the host build of the C ({why}: no "
                  "simulator to close the loop with)")


def _context(cfg: dict, out: Path) -> tuple[SweepContext, SearchSpace]:
    plant = get_plant(cfg["plant"]) if cfg.get("plant") else None
    space = SearchSpace.from_dict(cfg["space"])
    log = (LogSource(Path(cfg["data"]), tuple(cfg["inputs"]), tuple(cfg["outputs"]))
           if cfg.get("data") else None)
    ctx = SweepContext(plant=plant, log=log, target=load_board(cfg["board"]),
                       rate_hz=cfg["rate_hz"],
                       references=tuple(cfg["references"]), duration=cfg["duration"],
                       count_periods=cfg["count_periods"],
                       budget_fraction=cfg["budget_fraction"], train=dict(space.train),
                       seed=cfg["seed"], work=out / "trials")
    return ctx, space


# -- the objective --------------------------------------------------------------------------
def _constraints(ctx: SweepContext, rec: dict) -> dict:
    return {"period": rec["cycles_max"] - ctx.period_cycles,
            "flash": rec["flash"] - ctx.target.flash_bytes,
            "ram": rec["ram"] - ctx.target.ram_bytes}


def _finish(trial, ctx: SweepContext, rec: dict) -> tuple[float, float, float]:
    cons = _constraints(ctx, rec)
    for k, v in cons.items():
        trial.set_constraint(k, float(v))
    rec["constraints"] = cons
    for k, v in rec.items():
        trial.set_user_attr(k, v)
    return float(rec["tracking"]), float(rec["cycles_max"]), float(rec["flash"])


def _same(study, params: NetParams, number: int):
    """A finished trial with the same net and settings (the sampler may propose a point
    twice): its figures are reused instead of training again."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.number != number and t.user_attrs.get("params") == asdict(params) \
                and "repeat_of" not in t.user_attrs:
            return t
    return None


def make_objective(ctx: SweepContext, space: SearchSpace, say, on_stage):
    import optuna

    failures: list[int] = []

    def objective(trial):
        p = space.suggest(trial, ctx.plant)
        trial.set_user_attr("params", asdict(p))
        trial.set_user_attr("net", p.describe())
        trial.set_user_attr("worker", worker_id())
        prev = _same(trial.study, p, trial.number)
        if prev is not None:
            # Pruned, not answered again: the sampler then moves away from a point it has.
            why = f"same point as trial {prev.number}"
            trial.set_user_attr("repeat_of", prev.number)
            trial.set_user_attr("pruned", why)
            raise optuna.TrialPruned(why)
        out = ctx.work / f"{trial.number:04d}"
        try:
            rec = evaluate(ctx, p, out, stage=lambda s: on_stage(trial.number, p, s))
        except DoesNotFit as e:
            for k, v in e.attrs.items():
                if k != "model_keras_b64":
                    trial.set_user_attr(k, v)
            trial.set_user_attr("pruned", e.reason)
            raise optuna.TrialPruned(e.reason) from None
        except Exception as e:   # this trial failed (a build, the board): the study goes on
            trial.set_user_attr("error", f"{type(e).__name__}: {_one_line(e)}")
            failures.append((trial.number, f"{type(e).__name__}: {_one_line(e)}"))
            raise
        failures.clear()
        return _finish(trial, ctx, rec)

    objective.failures = failures

    return objective


# -- the sweep ------------------------------------------------------------------------------
def _printer(bar: Progress | None):
    def say(line: str) -> None:
        if bar is not None and bar.tty:
            bar.stream.write("\r" + " " * 100 + "\r")
            bar.stream.flush()
        print(line, flush=True)
    return say


def _summary_line(t, ctx: SweepContext, units: str) -> str:
    u = t.user_attrs
    head = f"  trial {t.number:>3} {u.get('net', ''):<30}"
    if t.state.name == "PRUNED":
        return f"{head} pruned: {u.get('pruned', '')}"
    if t.state.name != "COMPLETE":
        return f"{head} {t.state.name.lower()}: {u.get('error', '')}"
    cyc = u["cycles_max"]
    pe = f", path {u['path_error']:.4f} {units}" if "path_error" in u else ""
    again = f" (same as trial {u['repeat_of']})" if "repeat_of" in u else \
        f" in {u.get('seconds', {}).get('total', 0):.0f} s"
    what = "replay error" if u.get("score") == "replay" else "tracking"
    per = "net call" if u.get("cycles_measure") == "net call" else "worst period"
    return (f"{head} {what} {u['tracking']:.4f} {units}{pe}, {per} {cyc:,} cyc "
            f"({100 * cyc / ctx.period_cycles:.0f} %{'' if cyc <= ctx.period_cycles else ' OVER'})"
            f", flash {u['flash']:,} B{again}")


def run_sweep(o: SweepOptions) -> SweepResult:
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    _check_settings(o)
    out = Path(o.out)
    if out.exists() and not out.is_dir():
        raise NnmpcError(f"--out {out}: exists and is not a folder")
    name = o.study or DEFAULT_STUDY
    if (o.plant or o.data is not None) and not o.resume:
        # a bad space or log is one line before any storage is touched
        make_space(_source(o)[0], o.space_file, o.space_flags, o.train)
    if o.storage:
        url = o.storage
    else:
        db = out / "study.db"
        url = f"sqlite:///{db.resolve()}"
        if o.resume and not db.is_file():
            raise NnmpcError(f"--resume: no study in {out} (no {db.name})")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise NnmpcError(f"--out {out}: cannot create the folder: {e.strerror}") from None
    storage = open_storage(url)
    exists = name in _study_names(storage)
    if exists and not o.storage and not o.resume:
        raise NnmpcError(f"{out} already holds study '{name}': --resume to continue it, or "
                         "choose another --out")
    if o.resume and not exists:
        raise NnmpcError(f"--resume: no study '{name}' in {redact(url)}")
    stored = None
    if exists:
        stored = optuna.load_study(study_name=name, storage=storage).user_attrs.get("config")
    cfg = _config(o, stored)
    ctx, space = _context(cfg, out)
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        require(tool)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sampler = optuna.samplers.TPESampler(
        seed=None if o.storage else cfg["seed"] + (len(storage.get_all_trials(
            storage.get_study_id_from_name(name))) if exists else 0),
        n_startup_trials=min(10, max(3, o.trials // 3)), constant_liar=True)
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                directions=["minimize"] * 3, load_if_exists=True)
    if "config" not in study.user_attrs:
        study.set_user_attr("config", cfg)
        study.set_metric_names(["tracking", "cycles_max", "flash"])
    default = default_params(ctx.plant, space.values("kind")[0])
    before = len(study.trials)   # trials of earlier runs (resumed or shared)
    if o.baseline and default is not None and not study.trials \
            and space.contains(default, ctx.plant):
        study.enqueue_trial(space.point(default), user_attrs={"baseline": True},
                            skip_if_exists=True)

    units = ctx.units
    print(f"sweep '{name}' in {redact(url)}: "
          + (f"log {ctx.log.path.name}, " if ctx.log else "")
          + f"{ctx.name} on {ctx.target.name} at "
          f"{ctx.rate_hz:g} Hz ({ctx.period_cycles:,} cycles per period at "
          f"{ctx.target.clock_hz / 1e6:g} MHz, solver budget {ctx.budget_us} us), "
          f"{space.size(ctx.plant)} points in the space, {o.trials} trials by this worker"
          + (f", {before} in the study already" if before else "")
          + (" (the first: the default net, as the baseline)" if not before and study.trials
             else ""), flush=True)
    print(f"score: {cfg.get('score', 'closed loop')}", flush=True)
    done = [0]
    bar = Progress("trials", o.trials)
    say = _printer(bar)
    best_note = [""]

    def on_stage(number, p, s):
        bar.update(done[0], f"#{number} {s} {best_note[0]}")

    def on_trial(study_, t):
        done[0] += "repeat_of" not in t.user_attrs
        say(_summary_line(t, ctx, units))
        all_trials = study_.get_trials(deepcopy=False)
        front = rep.pareto_front(all_trials)
        pick = rep.choose(front, o.tolerance, rep.baseline_of(all_trials))
        if pick is not None:
            best_note[0] = (f"best #{pick.number} {pick.values[0]:.4f} {units} "
                            f"{int(pick.values[1]):,} cyc")
        bar.update(done[0], best_note[0])

    interrupted = False
    t0 = time.monotonic()
    objective = make_objective(ctx, space, say, on_stage)
    # One trial at a time, so that a point the sampler proposes again (answered from the
    # earlier trial, without training) does not count against --trials; a small space that
    # is used up ends the run.
    attempts = 0
    aborted = None
    with bar:
        try:
            while done[0] < o.trials and attempts < 4 * o.trials + 8:
                attempts += 1
                study.optimize(objective, n_trials=1, callbacks=[on_trial],
                               catch=(Exception,))
                fails = objective.failures
                if len(fails) >= MAX_FAILURES_IN_A_ROW:   # beyond one net: stop this worker
                    aborted = (f"{len(fails)} trials in a row failed (trials "
                               f"{', '.join(str(n) for n, _ in fails)}); the last: "
                               f"{fails[-1][1]}")
                    break
        except KeyboardInterrupt:
            interrupted = True
    if aborted is not None:
        say(f"stopped: {aborted}")
    elif done[0] < o.trials and not interrupted:
        say(f"the sampler kept proposing points already tried ({space.size(ctx.plant)} points "
            f"in the space): stopped after {done[0]} new trials")
    if interrupted:
        say(f"interrupted: the {done[0]} finished trials of this run are kept in the study; "
            "--resume continues it")
    res = finish(study, ctx, out, name, url, o.tolerance, export=o.export)
    res.interrupted, res.aborted, res.added, res.ctx = interrupted, aborted, done[0], ctx
    print(f"{len(res.trials)} trials in the study ({done[0]} by this worker in "
          f"{time.monotonic() - t0:.0f} s); Pareto front (within the budgets):")
    print(res.table)
    print(f"wrote {res.csv}, {res.png}" + (f" and {res.best}/" if res.best else ""))
    return res




def finish(study, ctx: SweepContext, out: Path, name: str, url: str, tolerance: float = 0.0,
           export: bool = True) -> SweepResult:
    """Front, table, CSV, plot and best/ from every trial in the study so far."""
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    front = rep.pareto_front(trials)
    chosen = rep.choose(front, tolerance, rep.baseline_of(trials))
    units = ctx.units
    table = rep.front_table(front, chosen, units, ctx.period_cycles, ctx.target.clock_hz) \
        if front else "(no trial within the budgets yet)"
    rows = rep.trial_rows(trials, ctx.references, front, chosen)
    csv_path = rep.write_csv(rows, out / "trials.csv")
    png = rep.plot_front(out / "pareto.png", trials, front, chosen, ctx.period_cycles,
                         f"{ctx.name} on {ctx.target.name} at {ctx.rate_hz:g} Hz: "
                         f"{len(trials)} trials", units)
    best = None
    if chosen is not None and export:
        best = rep.export_best(chosen, ctx, out / "best", name)
    (out / "front.json").write_text(json.dumps(
        {"study": name, "storage": redact(url), "chosen": chosen.number if chosen else None,
         "front": [{"number": t.number, "values": list(t.values), "net": t.user_attrs["net"]}
                   for t in front]}, indent=2) + "\n")
    return SweepResult(name, redact(url), trials, front, chosen, table, csv_path, png, best)


def main_sweep(o: SweepOptions) -> int:
    res = run_sweep(o)
    if res.aborted:
        print(f"nnmpc: error: {res.aborted}", file=sys.stderr)
        return 1
    return 130 if res.interrupted else 0

