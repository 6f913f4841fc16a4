"""The controller settings of one run, as the messages the device takes (CONFIG, WEIGHTS,
LIMITS, PID, PLANT), and sending them."""

from __future__ import annotations

import numpy as np

from ..errors import NnmpcError
from ..link import protocol_msgs as M
from ..plants import Plant
from .nets import NetInfo
from .setups import default_u_init, output_lag, setup_for

CONTROLLERS = {"nr": 0, "pid": 1, "fd": 2}
CH = M.CHANNELS


def _pad(values, n=CH, fill=0.0) -> list[float]:
    v = [float(x) for x in values][:n]
    return v + [fill] * (n - len(v))


def settings(plant: Plant, net: NetInfo, controller: str, *, source: str = "host",
             period_us: int = 0, pid: dict | None = None, budget_us: int = 0,
             horizon: int | None = None, moves: int | None = None,
             max_iter: int | None = None, u_init=None) -> list:
    """The settings messages for one run, in the order the device takes them."""
    st = setup_for(plant, net.kind)
    p, m = len(plant.outputs), len(plant.inputs)
    if controller not in CONTROLLERS:
        raise NnmpcError(f"unknown controller '{controller}' (known: {', '.join(CONTROLLERS)})")
    # A forward-kinematics net alone is inverted one period ahead (N = Nc = 1); with the
    # plant's output lag modelled around it, it predicts over the setup's horizon.
    lag = output_lag(plant) if (net.kind == "fk" and st.lag) else 0.0
    if net.kind == "fk" and not st.lag:
        N = Nc = 1
    else:
        N = horizon or st.horizon
        Nc = min(moves or st.moves, N)
    u_mid = 0.5 * (plant.u_low + plant.u_high)
    if u_init is None:
        u_init = default_u_init(plant, net.kind)
    msgs = [
        M.ConfigRequest(controller=CONTROLLERS[controller], source=0 if source == "host" else 1,
                        p=p, m=m, na=net.na, nb=net.nb, horizon=N, moves=Nc,
                        period_us=period_us, budget_us=budget_us,
                        max_iter=max_iter or st.max_iter, telemetry_every=1,
                        fd_eps=float(1e-3 * np.max(plant.u_high - plant.u_low))),
        M.WeightsRequest(q=_pad(st.q or [1.0] * p), r=_pad([st.r] * m), s=_pad([st.s] * m),
                         u_nom=_pad(u_mid), bias_gain=st.bias_gain, tol_step=1e-4,
                         lambda0=1e-3, lag=lag,
                         y_filter=st.y_filter if net.kind == "narx" else 0.0),
        M.LimitsRequest(u_lo=_pad(plant.u_low), u_hi=_pad(plant.u_high),
                        u_init=_pad(plant.clip(u_init))),
    ]
    if pid is not None:
        mix = np.zeros((CH, CH))
        mix[:m, :p] = pid["mix"]
        tr = list(st.tracked)
        g = lambda v: _pad([v if i in tr else 0.0 for i in range(p)])  # noqa: E731
        msgs.append(M.PidRequest(kp=g(pid["kp"]), ki=g(pid["ki"]), kd=g(pid["kd"]),
                                 u_bias=_pad(pid["u_bias"]), mix=[float(v) for v in mix.ravel()]))
    if source == "device":
        if plant.name != "msd":
            raise NnmpcError(f"the on-device plant is a mass-spring-damper; '{plant.name}' runs "
                             "on the host (--sim host)")
        msgs.append(M.PlantRequest(kind=1, substeps=plant.substeps, dt=plant.dt,
                                   params=_pad([plant.m, plant.k, plant.c, 1000.0], 8)))
    return msgs


def configure(client, msgs: list) -> np.ndarray:
    """Send the settings; return the input the device starts from (u_init)."""
    u_init = None
    for msg in msgs:
        client.configure(msg)
        if isinstance(msg, M.LimitsRequest):
            u_init = np.asarray(msg.u_init, float)
    return u_init
