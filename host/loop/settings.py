"""The controller settings of one run, as the messages the device takes (CONFIG, WEIGHTS,
LIMITS, PID, PLANT), and sending them."""

from __future__ import annotations

import numpy as np

from ..errors import NnmpcError
from ..link import protocol_msgs as M
from ..plants import Plant
from .controller import CONTROLLERS, ControllerSettings, _pad
from .nets import NetInfo
from .setups import default_u_init, estimator_noise, output_lag, setup_for



def controller_settings(plant: Plant, net: NetInfo, controller: str, *, pid: dict | None = None,
                        budget_us: int = 0, horizon: int | None = None,
                        moves: int | None = None, max_iter: int | None = None,
                        u_init=None, estimator: bool = False) -> ControllerSettings:
    """The plant's default controller for ``net`` as a :class:`ControllerSettings`;
    ``estimator``: with the extended Kalman filter on the output lags (a narx net; Q and R
    from :func:`.setups.estimator_noise`)."""
    st = setup_for(plant, net.kind)
    if controller not in CONTROLLERS:
        raise NnmpcError(f"unknown controller '{controller}' (known: {', '.join(CONTROLLERS)})")
    p = len(plant.outputs)
    # A forward-kinematics net alone is inverted one period ahead (N = Nc = 1); with the
    # plant's output lag modelled around it, it predicts over the setup's horizon.
    lag = output_lag(plant) if (net.kind == "fk" and st.lag) else 0.0
    if net.kind == "fk" and not st.lag:
        N = Nc = 1
    else:
        N = horizon or st.horizon
        Nc = min(moves or st.moves, N)
    if u_init is None:
        u_init = default_u_init(plant, net.kind)
    mix = None if pid is None else pid_table(pid)
    if estimator and net.kind != "narx":
        raise NnmpcError(f"--estimator: the estimator runs on a narx net's output lags; this "
                         f"is a {net.kind} net")
    kq, kr, kd = estimator_noise(plant) if estimator else (None, None, None)
    return ControllerSettings(
        estimator=bool(estimator), estimator_q=kq, estimator_r=kr, estimator_qd=kd,
        outputs=[s.name for s in plant.outputs], inputs=[s.name for s in plant.inputs],
        tracked=[plant.outputs[i].name for i in st.tracked],
        output_units=[s.unit for s in plant.outputs], input_units=[s.unit for s in plant.inputs],
        u_lo=[float(v) for v in plant.u_low], u_hi=[float(v) for v in plant.u_high],
        plant=plant.name, controller=controller, net=net.kind, na=net.na, nb=net.nb, rate_hz=1.0 / plant.dt,
        budget_us=budget_us, horizon=N, moves=Nc, max_iter=max_iter or st.max_iter,
        q=[float(v) for v in (st.q or [1.0] * p)], r=st.r, s=st.s, bias_gain=st.bias_gain,
        lag=float(lag), y_filter=st.y_filter if net.kind == "narx" else 0.0,
        fd_eps=float(1e-3 * np.max(plant.u_high - plant.u_low)),
        u_init=[float(v) for v in plant.clip(u_init)], pid=mix,
        # A reading more than half the output's span outside its range is implausible.
        y_lo=[float(s.low - 0.5 * (s.high - s.low)) for s in plant.outputs],
        y_hi=[float(s.high + 0.5 * (s.high - s.low)) for s in plant.outputs])


def pid_table(pid: dict) -> dict:
    """The [pid] table of the settings from tuned gains (:func:`.pid.tune_pid`,
    :func:`.pid.pid_at_start`): kp, ki, kd, u_bias, mix (row by row); with feed-forward kff,
    kdff, y_bias, lead; preview when not 0."""
    out = {"kp": float(pid["kp"]), "ki": float(pid["ki"]), "kd": float(pid["kd"]),
           "u_bias": [float(v) for v in pid["u_bias"]],
           "mix": [float(v) for v in np.asarray(pid["mix"]).ravel()]}
    if "kff" in pid:
        out.update(kff=float(pid["kff"]), kdff=float(pid["kdff"]),
                   y_bias=[float(v) for v in np.asarray(pid["y_bias"]).ravel()],
                   lead=int(pid["lead"]))
    if int(pid.get("preview", 0)):
        out["preview"] = int(pid["preview"])
    return out


def settings(plant: Plant, net: NetInfo, controller: str, *, source: str = "host",
             period_us: int = 0, pid: dict | None = None, budget_us: int = 0,
             horizon: int | None = None, moves: int | None = None,
             max_iter: int | None = None, u_init=None, estimator: bool = False) -> list:
    """The settings messages for one run, in the order the device takes them."""
    cs = controller_settings(plant, net, controller, pid=pid, budget_us=budget_us,
                             horizon=horizon, moves=moves, max_iter=max_iter, u_init=u_init,
                             estimator=estimator)
    if period_us:
        cs.rate_hz = 1e6 / period_us
    msgs = cs.messages(source=source, lockstep=not period_us)
    if source == "device":
        if plant.name != "msd":
            raise NnmpcError(f"the on-device plant is a mass-spring-damper; '{plant.name}' runs "
                             "on the host (--sim host)")
        msgs.append(M.PlantRequest(kind=1, substeps=plant.substeps, dt=plant.dt,
                                   params=_pad([plant.m, plant.k, plant.c, 1000.0], 8)))
    return msgs


def configure(client, msgs: list) -> np.ndarray:
    """Send the settings; return the input the device starts from (u_init)."""
    from ..link.client import DeviceError

    u_init = None
    for msg in msgs:
        try:
            client.configure(msg)
        except DeviceError as e:
            if msg.TYPE == M.ESTIMATOR and e.code == M.ERR_UNKNOWN_TYPE:
                raise NnmpcError("the board's firmware has no estimator (ESTIMATOR unknown): "
                                 "build it with NNMPC_ESTIMATOR=1, or run without the "
                                 "estimator") from None
            raise
        if isinstance(msg, M.LimitsRequest):
            u_init = np.asarray(msg.u_init, float)
    return u_init
