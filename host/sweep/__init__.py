"""Sweep: search the nets and controller settings for the one that fits the board's control
period and tracks best (``nnmpc sweep``), as an Optuna study on one machine or many.

A trial trains a net (:mod:`.trial`), compiles it, checks it against the board's flash and RAM,
counts the controller's worst period on the Cortex-M4 instruction counter and closes the loop
on the emulated board; :mod:`.study` runs the study, :mod:`.space` defines what is searched and
:mod:`.report` writes the Pareto front, the trials and the chosen net.
"""

from .space import NetParams, SearchSpace, default_params, default_space, make_space
from .study import SweepOptions, SweepResult, open_storage, run_sweep
from .trial import DoesNotFit, SweepContext, evaluate

__all__ = ["DoesNotFit", "NetParams", "SearchSpace", "SweepContext", "SweepOptions",
           "SweepResult", "default_params", "default_space", "evaluate", "make_space",
           "open_storage", "run_sweep"]
