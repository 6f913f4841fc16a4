"""nnmpc: learned models and a Newton MPC inside the material, on a Cortex-M microcontroller.

The objects behind the ``nnmpc`` commands, for scripts and notebooks (docs/PYTHON.md)::

    import nnmpc
    board = nnmpc.load_board("nucleo_f446re")            # a board file (boards/*.toml)
    plant = nnmpc.get_plant("tendon")                      # a simulated plant
    nnmpc.compile_model("fk.keras", "out/", name="fk")     # model file -> C99

Stages, one sub-package each: :mod:`nnmpc.compiler` (model files -> IR -> C),
:mod:`nnmpc.host.plants`, :mod:`nnmpc.host.learn`, :mod:`nnmpc.host.build`,
:mod:`nnmpc.host.link`, :mod:`nnmpc.host.loop` (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from nnmpc.compiler import CompileError, compile_model, load_model
from nnmpc.compiler.version import __version__
from nnmpc.host.build.boards import Board, list_boards, load_board
from nnmpc.host.build.channels import Channel
from nnmpc.host.errors import NnmpcError
from nnmpc.host.learn.logs import LogTable, read_log
from nnmpc.host.learn.pipeline import TrainOptions, TrainOutcome, train_log, train_plant
from nnmpc.host.link.client import DeviceClient, DeviceError, Hello, Telemetry
from nnmpc.host.link.qemu import QemuBoard
from nnmpc.host.link.rig import RigSimulator, boot_rig
from nnmpc.host.loop.atport import run_board_sensors, run_hil
from nnmpc.host.loop.closedloop import RunResult, run_on_board
from nnmpc.host.loop.collect import CollectResult, Excitation, Signal, collect
from nnmpc.host.loop.controller import ControllerSettings
from nnmpc.host.loop.logs import load_run, write_log, write_mcap
from nnmpc.host.loop.plot import plot
from nnmpc.host.loop.references import reference, reference_csv
from nnmpc.host.loop.runlog import RunLog, summary, write_csv
from nnmpc.host.loop.settings import controller_settings
from nnmpc.host.plants import PLANTS, Plant, get_plant


def open_port(url: str, baud: int = 115200, timeout: float = 0.5):
    """A pyserial port for a board at ``url`` (/dev/ttyACM0, socket://127.0.0.1:PORT, ...)."""
    from nnmpc.host.loop.monitor import open_port as _open

    return _open(url, baud, timeout=timeout)


__all__ = [
    "Board", "Channel", "CollectResult", "CompileError", "ControllerSettings", "DeviceClient",
    "DeviceError", "Excitation", "Hello", "LogTable", "NnmpcError", "PLANTS", "Plant",
    "QemuBoard", "RigSimulator", "RunLog", "RunResult", "Signal", "Telemetry", "TrainOptions",
    "TrainOutcome", "__version__", "boot_rig", "collect", "compile_model", "controller_settings",
    "get_plant", "list_boards", "load_board", "load_model", "load_run", "open_port", "plot",
    "read_log", "reference", "reference_csv", "run_board_sensors", "run_hil", "run_on_board",
    "summary", "train_log", "train_plant", "write_csv", "write_log", "write_mcap",
]
