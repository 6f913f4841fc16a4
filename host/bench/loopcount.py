"""The controller's cost per period on a Cortex-M4F: a firmware image in the instruction
counter (:mod:`.cortexm`), in a closed loop with the host plant.

Every byte of each SENSOR frame goes through ``nnmpc_app_on_byte`` and everything it executes
is counted: frame decoding, the solve, the telemetry frame and its UART writes (as CPU work: a
FIFO or DMA is assumed, not the wire time). The emulated SysTick is advanced from the estimated
cycles at the given core clock, so the solver's time budget sees Cortex-M4 time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import loop as R
from ..loop.runlog import path_error
from ..link import protocol as P
from ..link import protocol_msgs as M
from ..loop.pid import preview_reference
from ..plants import get_plant
from .cortexm import CortexM4Counter

CLOCK_HZ = 168_000_000
BUDGET_US = 900   # solver time budget per period for a 1 kHz loop (the rest: I/O, telemetry)


class UnicornLoop:
    """The firmware image in unicorn: feed frames byte by byte, capture the UART output."""

    UART = 0x40004000
    SYST_CVR = 0xE000E018
    SYSTICK_HZ = 25_000_000            # the board's SysTick input (NNMPC_SYSTICK_INPUT_HZ)
    RELOAD = SYSTICK_HZ // 1000

    def __init__(self, elf: Path, clock_hz: int = CLOCK_HZ, *, profile: bool = False) -> None:
        from unicorn import UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UcError

        self.clock_hz = int(clock_hz)
        self.cnt = CortexM4Counter(elf, profile=profile)
        self.profile: dict[str, int] = {}     # estimated cycles by function (profile=True)
        uc = self.cnt._uc
        for base in (0x40004000, 0xE000E000):
            try:
                uc.mem_map(base, 0x1000)
            except UcError:
                pass                      # already mapped by the CPU model
        self.out = bytearray()
        uc.hook_add(UC_HOOK_MEM_WRITE, self._on_write, begin=self.UART, end=self.UART + 3)
        # The work clock: SysTick (ms counter + down-counter) advanced from the estimated
        # cycles at clock_hz, so the firmware's time budget sees Cortex-M4 time. Both are
        # written when the firmware reads them (the counter has costed the whole current
        # block by then, as a block hook writing them at every block start would).
        self.cycles_before = 0
        self.millis = self.cnt.address("g_millis")
        uc.hook_add(UC_HOOK_MEM_READ, self._on_clock_read, begin=self.millis,
                    end=self.millis + 3)
        uc.hook_add(UC_HOOK_MEM_READ, self._on_clock_read, begin=self.SYST_CVR,
                    end=self.SYST_CVR + 3)
        if self.call("nnmpc_board_init").instructions <= 0:
            raise RuntimeError("board init did not run")
        self.app = self.cnt.address("g_app")
        self.dec = P.Decoder()
        self.seq = 0
        self.max_stack = 0

    def _on_write(self, uc, access, address, size, value, user) -> None:
        if address == self.UART:
            self.out.append(value & 0xFF)

    def _on_clock_read(self, uc, access, address, size, value, user) -> None:
        ticks = (self.cycles_before + self.cnt._cyc) * self.SYSTICK_HZ // self.clock_hz
        uc.mem_write(self.millis, (ticks // self.RELOAD & 0xFFFFFFFF).to_bytes(4, "little"))
        uc.mem_write(self.SYST_CVR, (self.RELOAD - 1 - ticks % self.RELOAD).to_bytes(4, "little"))

    def find_floats(self, rows: np.ndarray, lo: int = 0x20000000, size: int = 0x30000) -> list[int]:
        """Addresses of every copy of ``rows`` (float32, row-major) in ``size`` bytes of RAM
        from ``lo``."""
        data = np.asarray(rows, "<f4").tobytes()
        ram = self.cnt.read(lo, size)
        out, i = [], ram.find(data)
        while i >= 0:
            out.append(lo + i)
            i = ram.find(data, i + 1)
        return out

    def call(self, *args):
        r = self.cnt.call(*args)
        self.cycles_before += r.cycles
        for f, c in r.profile.items():
            self.profile[f] = self.profile.get(f, 0) + c
        return r

    def send(self, msg_type: int, payload: bytes = b"") -> tuple[list, int, int]:
        """Feed one frame; return (frames answered, instructions, cycles) over all its bytes."""
        self.seq = (self.seq + 1) & 0xFF
        n_ins = n_cyc = 0
        for b in P.encode_frame(msg_type, self.seq, payload):
            r = self.call("nnmpc_app_on_byte", (self.app, b))
            n_ins += r.instructions
            n_cyc += r.cycles
            self.max_stack = max(self.max_stack, r.stack_bytes)
        frames = self.dec.feed(bytes(self.out))
        self.out.clear()
        return frames, n_ins, n_cyc


def count_loop(plant_name: str, controller: str, net, img, periods: int,
               budget_us: int = BUDGET_US, *, clock_hz: int = CLOCK_HZ,
               reference_kind: str = "step", horizon: int | None = None,
               moves: int | None = None, refs: np.ndarray | None = None, seed: int = 0,
               pid: dict | None = None, preview: int = 0, hold_reference: bool = False,
               run_periods: int | None = None, prefix: int | None = None,
               profile: bool = False, estimator: bool = False) -> dict:
    """Closed loop in unicorn on the plant's ``reference_kind`` reference (its first
    ``periods`` periods), or on the reference rows ``refs``; instructions and cycles per
    period, with the solver's time budget on the emulated SysTick clock of a core at
    ``clock_hz``.

    ``seed``: the sensor noise. ``pid``: the PID's gains (default: tuned on the same
    reference); with ``kff``, ``kdff``, ``lead`` and ``y_bias``, the PID with feed-forward
    (the PID message's fields of the tracked outputs). ``preview`` (pid): the device is given
    r[k + preview] in place of r[k] (the uploaded trajectory shifted, the last point held);
    errors are on r[k]. ``hold_reference``:
    no preview: before each period the bench writes r[k] into the rows k .. k + N of the
    device's trajectory buffer (in the emulator's memory: no frame, no cycles), so the whole
    horizon sees the present reference. ``run_periods``: run only the first that many
    periods of the uploaded reference. ``prefix``: also report the figures of the first
    ``prefix`` periods (``"prefix"``). ``profile``: estimated cycles by function.
    ``estimator``: nr and fd start their rollouts from the extended Kalman filter's state (the
    image must be built with NNMPC_ESTIMATOR)."""
    plant = get_plant(plant_name)
    refs = R.reference(plant, reference_kind)[:periods] if refs is None else \
        np.asarray(refs, float)[:periods]
    st = R.setup_for(plant)
    u0 = R.start_input(plant, refs[0], R.default_u_init(plant, net.kind), st.tracked)
    if controller == "pid" and pid is None:
        pid = R.tune_pid(plant, refs, u0)
    loop = UnicornLoop(img.elf, clock_hz, profile=profile)
    u_init = None
    for msg in R.settings(plant, net, controller, pid=pid if controller == "pid" else None,
                          budget_us=budget_us, u_init=u0, horizon=horizon, moves=moves,
                          estimator=estimator and controller != "pid"):
        if isinstance(msg, M.PidRequest) and pid is not None and "kff" in pid:
            msg = _with_feedforward(msg, pid, st.tracked)
        frames, _, _ = loop.send(msg.TYPE, msg.pack())
        if not frames or frames[-1].type != (msg.TYPE | P.REPLY):
            raise RuntimeError(f"{type(msg).__name__} refused: {frames}")
        if isinstance(msg, M.LimitsRequest):
            u_init = np.asarray(msg.u_init[:len(plant.inputs)], float)
    T, p = refs.shape
    seen = preview_reference(refs, preview) if (controller == "pid" and preview) else refs
    per = max(1, M.TrajectoryRequest.TAIL_MAX // p)
    traj = None
    if hold_reference:   # where the control core keeps the trajectory: upload a probe, find it
        probe = np.random.default_rng(12345).uniform(-1, 1, (T, p)).astype("<f4")
        for off in range(0, T, per):
            loop.send(P.TRAJECTORY, M.TrajectoryRequest(total=T, offset=off, rows=[
                float(v) for v in probe[off:off + per].ravel()]).pack())
        found = loop.find_floats(probe, *loop.cnt.symbols["g_control"])
        if len(found) != 1:
            raise RuntimeError(f"the uploaded trajectory is in g_control {len(found)} times")
        traj = found[0]
    for off in range(0, T, per):
        loop.send(P.TRAJECTORY, M.TrajectoryRequest(total=T, offset=off, rows=[
            float(v) for v in seen[off:off + per].ravel()]).pack())
    loop.send(P.START)
    x = plant.steady_state(u_init[None])[0]
    u = u_init
    rng = np.random.default_rng(seed)
    ins, cyc, its, sts, ys = [], [], [], [], []
    for k in range(T if run_periods is None else min(T, run_periods)):
        if hold_reference:
            # No preview: the rows the device reads this period (k .. k + N) hold r[k].
            n = min(T - k, R.setup_for(plant, net.kind).horizon + 1 if horizon is None
                    else horizon + 1)
            loop.cnt.write(traj + 4 * p * k, np.repeat(refs[k:k + 1], n, axis=0)
                           .astype("<f4").tobytes())
        y = plant.measure(x, u, rng)
        frames, n_i, n_c = loop.send(P.SENSOR, M.SensorRequest(k=k, y=[float(v) for v in y]).pack())
        tel = [M.Telemetry.unpack(f.payload) for f in frames if f.type == P.TELEMETRY]
        if len(tel) != 1:
            raise RuntimeError(f"period {k}: {len(tel)} telemetry frames")
        t = tel[0]
        u = np.asarray(t.values[2 * t.p:], float)
        ins.append(n_i), cyc.append(n_c), its.append(t.iterations), sts.append(t.status)
        ys.append(plant.h(x, u))
        x = plant.step(x, u)
    tr = list(st.tracked)
    out = _figures(np.array(ys)[:, tr], refs[:len(ys), tr], np.array(ins), np.array(cyc),
                   np.array(its), np.array(sts), clock_hz)
    if prefix:
        n = min(prefix, len(ys))
        out["prefix"] = _figures(np.array(ys)[:n, tr], refs[:n, tr], np.array(ins)[:n],
                                 np.array(cyc)[:n], np.array(its)[:n], np.array(sts)[:n],
                                 clock_hz)
    out.update({"budget_us": budget_us if controller != "pid" else 0,
                "clock_hz": int(clock_hz), "stack_bytes_max": int(loop.max_stack)})
    if profile:
        out["profile"] = {f: c / len(ys) for f, c in sorted(loop.profile.items(),
                                                            key=lambda x: -x[1])}
    return out


def _with_feedforward(msg, pid: dict, tracked) -> M.PidRequest:
    """The PID message with the feed-forward of ``pid`` (kff, kdff on the tracked outputs,
    y_bias, lead)."""
    from dataclasses import replace

    from ..loop.controller import feedforward_fields

    return replace(msg, **feedforward_fields(pid, tracked, len(msg.kp)))


def _figures(y, ref, ins, cyc, its, sts, clock_hz) -> dict:
    e = y - ref
    rms = float(np.sqrt((e ** 2).mean()))
    out = {"periods": int(len(y)), "instructions_mean": int(ins.mean()),
           "instructions_max": int(ins.max()), "cycles_mean": int(cyc.mean()),
           "cycles_p99": int(np.percentile(cyc, 99)), "cycles_max": int(cyc.max()),
           "iterations_mean": round(float(np.mean(its)), 2),
           "periods_stopped_by_budget": int(np.sum(sts == 2)),
           "status_counts": {str(int(v)): int(n) for v, n in zip(*np.unique(sts, return_counts=True))},
           "tracking_rms": rms,
           "tracking_rms_in_this_loop": round(rms, 4),
           "loop_rate_hz_at_168MHz_worst": int(CLOCK_HZ / cyc.max()),
           "loop_rate_hz_at_168MHz_mean": int(CLOCK_HZ / cyc.mean()),
           "loop_rate_hz_worst": int(clock_hz / cyc.max())}
    if y.shape[1] >= 2:
        pe = path_error(y, ref)
        out["path_error_rms"] = float(np.sqrt((pe ** 2).mean()))
        out["path_error_max"] = float(pe.max())
        # With timing: the distance to where the tip should be now (the error's norm).
        out["path_error_timed_rms"] = float(np.sqrt((e ** 2).sum(axis=1).mean()))
    return out
