"""The PID baseline: the firmware's PID law simulated on the plant, and its gains tuned
by a grid search on the plant model."""

from __future__ import annotations

import numpy as np

from ..plants import Plant
from .setups import default_u_init, setup_for, start_input


def pid_mix(plant: Plant, tracked: tuple[int, ...],
            u0=None) -> tuple[np.ndarray, np.ndarray]:
    """Input bias (``u0``: the input the run starts from; default the middle of the range) and
    the m x p mixing matrix: the pseudo-inverse of the quasi-static gain d y_tracked / d u at
    the bias point (central differences on the plant)."""
    p, m = len(plant.outputs), len(plant.inputs)
    u0 = 0.5 * (plant.u_low + plant.u_high) if u0 is None else np.asarray(u0, float)
    G = np.zeros((p, m))
    for a in range(m):
        h = 1e-3 * (plant.u_high[a] - plant.u_low[a])
        e = np.eye(m)[a] * h
        G[:, a] = (plant.forward_kinematics(u0 + e) - plant.forward_kinematics(u0 - e)) / (2 * h)
    mix = np.zeros((m, p))
    mix[:, list(tracked)] = np.linalg.pinv(G[list(tracked)])
    return u0, mix


def pid_y_bias(plant: Plant, u_bias) -> np.ndarray:
    """The output at the input bias (the plant at rest under ``u_bias``): the point the
    feed-forward's static inverse ``mix`` is taken around."""
    return np.asarray(plant.forward_kinematics(np.asarray(u_bias, float)), float)


def simulate_pid(plant: Plant, refs: np.ndarray, gains: np.ndarray, u_bias, mix,
                 tracked, seed: int | None = 1, preview: int = 0, *, lead: int = 0,
                 y_bias=None, history: bool = False):
    """The firmware's PID law (nnmpc_control.c ``pid_period``) on the plant for a batch of
    gain rows, with the plant's sensor noise (seed None: none); returns the tracking RMS
    (noise-free outputs) per row (and, with ``history``, the inputs applied, B x T x m).

    ``gains``: B x 3 (kp, ki, kd) or B x 5 (kp, ki, kd, kff, kdff), the same for every tracked
    output. Per tracked output i, with e = r[k] - y[k]:
    v = kp e + I + ki e - kd (y[k] - y[k-1]) + kff (r[k+L] - y_bias) + kdff (r[k+L+1] - r[k+L]),
    u = clip(u_bias + mix v), and I += ki e while no input is clipped. The first period's
    derivative is 0 (the first measurement is its own predecessor, as on the device). The
    feed-forward reads the reference L = ``lead`` periods ahead (the last point held);
    ``y_bias`` is the output at ``u_bias`` (default :func:`pid_y_bias`): kff = 1 is the static
    inverse through ``mix``. ``preview`` = P: the PID is given r[k + P] in place of r[k] (the
    uploaded reference shifted) and is scored on r[k]. With B x 3 gains (or kff = kdff = 0)
    this is the PID without feed-forward."""
    rng = None if seed is None else np.random.default_rng(seed)
    gains = np.asarray(gains, float)
    B, T = len(gains), len(refs)
    seen = preview_reference(refs, preview)
    p = len(plant.outputs)
    kp, ki, kd = (gains[:, i:i + 1] for i in range(3))
    ff = gains.shape[1] > 3
    sel = np.zeros(p)
    sel[list(tracked)] = 1.0
    if ff:
        kff, kdff = gains[:, 3:4], gains[:, 4:5]
        yb = pid_y_bias(plant, u_bias) if y_bias is None else np.asarray(y_bias, float)
        r_l = preview_reference(seen, lead)
        d_l = (preview_reference(seen, lead + 1) - r_l) * sel
        r_l = (r_l - yb) * sel
    x = np.broadcast_to(plant.steady_state(np.asarray(u_bias)[None]), (B, len(plant.states))).copy()
    integ = np.zeros((B, p))
    y_prev = None
    err2 = np.zeros(B)
    us = np.zeros((B, T, len(u_bias))) if history else None
    for k in range(T):
        y = plant.h(x, np.broadcast_to(u_bias, (B, len(u_bias))))
        err2 += (((refs[k] - y) * sel) ** 2).sum(axis=1)
        if rng is not None and plant.noise_std:
            y = y + rng.normal(0.0, plant.noise_std, size=y.shape)
        if y_prev is None:
            y_prev = y
        e = (seen[k] - y) * sel
        v = kp * e + integ + ki * e - kd * (y - y_prev) * sel
        if ff:
            v = v + (kff * r_l[k] + kdff * d_l[k])
        s = u_bias + v @ mix.T
        u = np.clip(s, plant.u_low, plant.u_high)
        sat = np.any(u != s, axis=1, keepdims=True)
        integ = np.where(sat, integ, integ + ki * e)
        y_prev = y
        if history:
            us[:, k] = u
        x = plant.step(x, u)
        x = np.where(np.isfinite(x), x, 1e6)
    rms = np.sqrt(err2 / (T * len(tracked)))
    return (rms, us) if history else rms


def preview_reference(refs: np.ndarray, preview: int) -> np.ndarray:
    """The reference a PID with ``preview`` periods of preview is given: r[k + preview], the
    last point held (what is uploaded to the device in place of r)."""
    refs = np.asarray(refs, float)
    if preview <= 0:
        return refs
    idx = np.minimum(np.arange(len(refs)) + int(preview), len(refs) - 1)
    return refs[idx]


def tuning_reference(plant: Plant) -> np.ndarray:
    """A reference for tuning the PID that is neither of the plant's scored references (its
    ``step`` and ``sine``): first half, steps to the midpoints of consecutive step levels
    taken in reverse order; second half, the sine (or circle) at 0.6 x the frequency and 0.7 x
    the amplitude. Same length as the setup's references."""
    st = setup_for(plant)
    T = int(round(st.duration / plant.dt))
    p = len(plant.outputs)
    tr = list(st.tracked)
    rows = np.zeros((T, p))
    lv = np.asarray(st.step_levels[::-1], float)
    mids = 0.5 * (lv[:-1] + lv[1:]) if len(lv) > 1 else lv
    half = T // 2
    seg = max(1, half // len(mids))
    for i, lvl in enumerate(mids):
        rows[i * seg:half, tr] = lvl
    t = np.arange(T - half) * plant.dt
    w = 2 * np.pi * 0.6 * st.sine_hz * t
    for j, ch in enumerate(tr):
        wave = np.sin(w) if (j == 0 or not st.circle) else np.cos(w) - 1.0
        rows[half:, ch] = st.sine_offset[j] + 0.7 * st.sine_amp[j] * wave
    return rows


#: The first grid of the search (per-period gains): kp, and ki, kd with 0 added. An axis whose
#: best value is at an end of its range is extended past it (MAX_EXTENSIONS times at most).
KP_GRID = np.geomspace(0.01, 100.0, 13)
KI_GRID = np.geomspace(1e-4, 10.0, 11)
KD_GRID = np.geomspace(0.01, 100.0, 9)
MAX_EXTENSIONS = 6
GAINS = ("kp", "ki", "kd")
#: The PID with feed-forward: the five gains are searched together, on a coarser first grid
#: (0 added to every axis but kp's), then finer grids of FF_POINTS values per gain; the
#: preview P over FF_PREVIEWS and the feed-forward's lead L over FF_LEADS (both extended
#: while the best is the largest).
FF_GAINS = ("kp", "ki", "kd", "kff", "kdff")
FF_GRIDS = (np.geomspace(0.01, 100.0, 7), np.geomspace(1e-4, 10.0, 6),
            np.geomspace(0.01, 100.0, 5), np.array([0.5, 1.0, 2.0]),
            np.geomspace(0.1, 100.0, 4))
FF_POINTS = 5
FF_PREVIEWS = (0, 1, 2, 3, 4, 6, 8)
FF_LEADS = (0, 1, 2, 3, 4, 6, 8)
FF_REFINED = 2           # the (preview, lead) pairs with the best first grids get finer grids
SPANS = (2.0, 2.0, 1.4, 1.4, 1.2, 1.2)


def _axis(values, zero: bool) -> np.ndarray:
    v = np.asarray(sorted(set(float(x) for x in values if x > 0)))
    return np.concatenate([[0.0], v]) if zero else v


def _grid_best(plant, refs, axes, u_bias, mix, tracked, seed, preview, lead=0, y_bias=None):
    G = np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(axes), -1).T
    rms = simulate_pid(plant, refs, G, u_bias, mix, tracked, seed, preview, lead=lead,
                       y_bias=y_bias)
    rms = np.where(np.isfinite(rms), rms, np.inf)
    i = int(np.argmin(rms))
    return G[i], float(rms[i])


def _edges(axes, best, names=GAINS) -> list[str]:
    """Axes whose best value is at an end of the range searched (0 is a natural end of every
    gain but kp: no integral, derivative or feed-forward action)."""
    out = []
    for name, ax, v in zip(names, axes, best):
        nz = ax[ax > 0]
        if v > 0 and (v >= nz.max() or (v <= nz.min() and name == "kp")):
            out.append(name)
    return out


def _coarse(plant, refs, axes, u_bias, mix, tracked, seed, preview, names, lead=0,
            y_bias=None):
    """The first grid, an axis extended past an end while its best is there."""
    axes = [a.copy() for a in axes]
    for ext in range(MAX_EXTENSIONS + 1):
        best, rms = _grid_best(plant, refs, axes, u_bias, mix, tracked, seed, preview, lead,
                               y_bias)
        edge = _edges(axes, best, names)
        if not edge or ext == MAX_EXTENSIONS:
            break
        for i, name in enumerate(names):
            if name in edge:
                nz = axes[i][axes[i] > 0]
                step = nz[1] / nz[0]
                more = (nz.max() * step ** np.arange(1, 4) if best[i] >= nz.max()
                        else nz.min() / step ** np.arange(1, 4))
                axes[i] = _axis(np.concatenate([nz, more]), i > 0)
    return axes, best, rms, ext


def _refine(plant, refs, axes, best, rms, u_bias, mix, tracked, seed, preview, names,
            points=7, lead=0, y_bias=None):
    """Finer grids around the best, recentred while the best sits on their edge."""
    seen = [list(a) for a in axes]     # every value searched, per gain
    for span in SPANS:
        loc = []
        for i, v in enumerate(best):
            if v > 0:
                loc.append(_axis(v * np.geomspace(1 / span, span, points), i > 0))
            else:
                nz = axes[i][axes[i] > 0]
                loc.append(_axis(nz[:2], True))
        b, r = _grid_best(plant, refs, loc, u_bias, mix, tracked, seed, preview, lead, y_bias)
        for i in range(len(names)):
            seen[i] += list(loc[i])
        if r < rms:
            best, rms = b, r
    return best, rms, seen


def _result(axes, best, rms, seen, ext, names, preview) -> dict:
    # At an edge: the best is the largest (or, for kp, the smallest) value searched at all.
    span = [np.asarray(v) for v in seen]
    on_edge = _edges([np.unique(v) for v in span], best, names)
    coarse = {"kp": [float(span[0][span[0] > 0].min()), float(span[0].max())],
              **{n: [0.0, float(span[i].max())] for i, n in enumerate(names) if i > 0},
              "points": int(np.prod([len(a) for a in axes])), "extensions": ext}
    return {**{n: float(best[i]) for i, n in enumerate(names)}, "preview": int(preview),
            "model_rms": rms, "grid": coarse, "on_edge": on_edge}


def _search(plant, refs, u_bias, mix, tracked, seed, preview) -> dict:
    axes = [KP_GRID.copy(), _axis(KI_GRID, True), _axis(KD_GRID, True)]
    axes, best, rms, ext = _coarse(plant, refs, axes, u_bias, mix, tracked, seed, preview,
                                   GAINS)
    best, rms, seen = _refine(plant, refs, axes, best, rms, u_bias, mix, tracked, seed,
                              preview, GAINS)
    return _result(axes, best, rms, seen, ext, GAINS, preview)


def _search_ff(plant, refs, u_bias, mix, tracked, seed, y_bias, previews=FF_PREVIEWS,
               leads=FF_LEADS, starts=()) -> dict:
    """kp, ki, kd, kff, kdff, the preview P and the lead L: the first grid for every preview
    (L = 0), then for every lead at the best preview; finer grids for the FF_REFINED best
    (P, L). A preview or lead whose best is the largest searched is extended past it (two more
    values, MAX_EXTENSIONS times at most). ``starts``: optima of the PID without
    feed-forward (kp, ki, kd, preview), refined from there too (kff = kdff = 0, L = 0), so the
    search finds at least what they do."""
    axes0 = [FF_GRIDS[0].copy()] + [_axis(g, True) for g in FF_GRIDS[1:]]
    started: dict = {}
    for g in starts:
        P = int(g["preview"])
        b0 = np.array([g["kp"], g["ki"], g["kd"], 0.0, 0.0])
        r0 = float(simulate_pid(plant, refs, b0[None], u_bias, mix, tracked, seed, P,
                                lead=0, y_bias=y_bias)[0])
        best, rms, seen = _refine(plant, refs, axes0, b0, r0, u_bias, mix, tracked, seed, P,
                                  FF_GAINS, FF_POINTS, 0, y_bias)
        r = _result(axes0, best, rms, seen, 0, FF_GAINS, P)
        r["lead"] = 0
        if (P, 0) not in started or r["model_rms"] < started[(P, 0)]["model_rms"]:
            started[(P, 0)] = r
    Ps, Ls = sorted({int(v) for v in previews}), sorted({int(v) for v in leads})
    first: dict = {}
    refined: dict = {}

    def coarse(P, L):
        if (P, L) not in first:
            first[(P, L)] = _coarse(plant, refs, axes0, u_bias, mix, tracked, seed, P,
                                    FF_GAINS, L, y_bias)
        return first[(P, L)][2]

    def more(vals):
        step = vals[-1] - vals[-2] if len(vals) > 1 else 1
        return vals + [vals[-1] + step, vals[-1] + 2 * step]

    ext = {"preview": 0, "lead": 0}
    while True:
        P = min(Ps, key=lambda P: coarse(P, Ls[0]))
        for L in Ls:
            coarse(P, L)
        for key in sorted(first, key=lambda k: first[k][2])[:FF_REFINED]:
            if key not in refined:
                axes, best, rms, e = first[key]
                best, rms, seen = _refine(plant, refs, axes, best, rms, u_bias, mix, tracked,
                                          seed, key[0], FF_GAINS, FF_POINTS, key[1], y_bias)
                refined[key] = _result(axes, best, rms, seen, e, FF_GAINS, key[0])
                refined[key]["lead"] = int(key[1])
        pool = dict(refined)
        for k, r in started.items():
            if k not in pool or r["model_rms"] < pool[k]["model_rms"]:
                pool[k] = r
        top = min(pool, key=lambda k: pool[k]["model_rms"])
        grow = [n for n, v, vals in (("preview", top[0], Ps), ("lead", top[1], Ls))
                if len(vals) > 1 and v >= vals[-1] and ext[n] < MAX_EXTENSIONS]
        if not grow:
            break
        for n in grow:
            ext[n] += 1
            if n == "preview":
                Ps = more(Ps)
            else:
                Ls = more(Ls)
    out = pool[top]
    out["grid"].update(preview=[Ps[0], Ps[-1]], lead=[Ls[0], Ls[-1]],
                       preview_extensions=ext["preview"], lead_extensions=ext["lead"],
                       points=out["grid"]["points"] * len(first))
    for n, v, vals in (("preview", top[0], Ps), ("lead", top[1], Ls)):
        if len(vals) > 1 and v >= vals[-1]:
            out["on_edge"].append(n)
    return out


def tune_pid(plant: Plant, refs: np.ndarray, u0=None, *, previews=(0,), seed: int = 1,
             u_run=None, feedforward: bool = False, leads=FF_LEADS) -> dict:
    """Grid search of (kp, ki, kd) on the plant model for the reference ``refs`` (and of the
    preview, over ``previews`` periods), then finer grids around the best; gains are discrete
    (per period), as the firmware uses them. The first grid spans kp 0.01-100, ki 0 and
    1e-4-10, kd 0 and 0.01-100, and an axis whose best value is at an end is extended past
    it; ``on_edge`` names the gains still at an end after that (none, normally). The plant
    starts at rest under ``u0`` (the PID's bias while tuning; default the middle of the
    range); ``u_run``, if given, is the bias (and the mixing point) of the run the gains are
    for.

    ``feedforward``: the PID with feed-forward (:func:`simulate_pid` with five gains): kp
    (0.01-100), ki, kd (as above), kff (0 and 0.5-2) and kdff (0 and 0.1-100) searched
    together on a coarser first grid, the preview P over ``previews`` and the lead L over
    ``leads`` (:func:`_search_ff`), and from the optimum of the PID without feed-forward over
    the same previews (which the five-gain law contains: the result is never worse on
    ``refs``); the result also has ``kff``, ``kdff``, ``lead`` and ``y_bias``."""
    st = setup_for(plant)
    u_bias, mix = pid_mix(plant, st.tracked, u0)
    if feedforward:
        # The PID without feed-forward (with the same previews) is a special case: its
        # optimum is a start of the search.
        plain = tune_pid(plant, refs, u0, previews=previews, seed=seed)
        best = _search_ff(plant, refs, u_bias, mix, st.tracked, seed,
                          pid_y_bias(plant, u_bias), previews, leads, starts=(plain,))
    else:
        best = None
        for L in previews:
            r = _search(plant, refs, u_bias, mix, st.tracked, seed, L)
            if best is None or r["model_rms"] < best["model_rms"]:
                best = r
    if u_run is not None:
        u_bias, mix = pid_mix(plant, st.tracked, u_run)
    best.update(u_bias=u_bias, mix=mix)
    if feedforward:
        best["y_bias"] = pid_y_bias(plant, u_bias)
    return best


#: The PIDs tuned on the plant's :func:`tuning_reference` (``nnmpc bench --loop``, and
#: ``nnmpc run --controller pid-preview|pid-ff``): the previews searched, and the sensor
#: noise's seed while tuning (the runs use others).
TUNING_PREVIEWS = FF_PREVIEWS
TUNING_SEED = 100
TUNED = {"pid": (0,), "pid-preview": TUNING_PREVIEWS, "pid-ff": TUNING_PREVIEWS}


def tune_on_tuning_reference(plant: Plant, controller: str) -> dict:
    """The gains of ``controller`` (pid, pid-preview or pid-ff) tuned on the plant's
    :func:`tuning_reference`, the plant at rest at its first point (bias and mixing there:
    :func:`pid_at_start` moves them to a run's own start). Keys: kp, ki, kd (pid-ff: kff, kdff,
    lead), preview, model_rms (on the tuning reference), grid, on_edge."""
    st = setup_for(plant)
    tref = tuning_reference(plant)
    u0 = start_input(plant, tref[0], default_u_init(plant, st.kind), st.tracked)
    ff = controller == "pid-ff"
    g = tune_pid(plant, tref, u0, previews=TUNED[controller], seed=TUNING_SEED, feedforward=ff,
                 leads=FF_LEADS)
    return {k: g[k] for k in ("kp", "ki", "kd") + (("kff", "kdff", "lead") if ff else ()) + (
        "preview", "model_rms", "grid", "on_edge")}


def pid_at_start(plant: Plant, gains: dict, u0) -> dict:
    """``gains`` (of :func:`tune_on_tuning_reference`) for a run that starts at rest under
    ``u0``: the input bias and the mixing matrix there (:func:`pid_mix`), and, with
    feed-forward, the output at that bias (``y_bias``)."""
    g = dict(gains)
    g["u_bias"], g["mix"] = pid_mix(plant, setup_for(plant).tracked, u0)
    if "kff" in g:
        g["y_bias"] = pid_y_bias(plant, g["u_bias"])
    return g


def _tuning_key(plant: Plant, controller: str) -> str:
    """What the result of :func:`tune_on_tuning_reference` depends on, hashed."""
    import hashlib

    h = hashlib.sha256()
    h.update(f"{plant.name}|{controller}|{TUNED[controller]}|{TUNING_SEED}|{MAX_EXTENSIONS}|"
             f"{SPANS}|{FF_POINTS}|{FF_PREVIEWS}|{FF_LEADS}|{FF_REFINED}|{plant.dt!r}|"
             f"{plant.noise_std!r}".encode())
    for a in (KP_GRID, KI_GRID, KD_GRID, *FF_GRIDS, tuning_reference(plant)):
        h.update(np.ascontiguousarray(a, float).tobytes())
    return h.hexdigest()[:16]


def tuned_gains(plant: Plant, controller: str, cache_dir=None, log=print) -> dict:
    """:func:`tune_on_tuning_reference`, kept as JSON in ``cache_dir`` (if given) under a key of
    the plant, the grids and the tuning reference: the pid-ff search takes minutes (about 2 on
    the msd), a second run with the same plant reads the file."""
    import json
    from pathlib import Path

    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{plant.name}-{controller}-{_tuning_key(plant, controller)}.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass                                   # a damaged file: tune again
    if controller == "pid-ff":
        log(f"tuning pid-ff for {plant.name} on its tuning reference (kp, ki, kd, kff, kdff, "
            "preview, lead; a few minutes" + (f", kept in {path.parent}" if path else "") + ")")
    g = tune_on_tuning_reference(plant, controller)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(g, indent=1, default=_json_default) + "\n")
        tmp.replace(path)
    return g


def _json_default(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"cannot write {type(v).__name__} to JSON")


def gains_for_run(plant: Plant, controller: str, refs: np.ndarray, u0, cache_dir=None,
                  log=print) -> dict | None:
    """The PID gains a run of ``controller`` uses, the plant at rest under ``u0`` at the start:
    ``pid`` tuned on the run's own reference ``refs``; ``pid-preview`` and ``pid-ff`` on the
    plant's tuning reference (:func:`tuned_gains`, cached in ``cache_dir``), as the bench
    does, moved to the run's start (:func:`pid_at_start`). None for the other controllers."""
    if controller == "pid":
        return tune_pid(plant, refs, u0)
    if controller in ("pid-preview", "pid-ff"):
        return pid_at_start(plant, tuned_gains(plant, controller, cache_dir, log), u0)
    return None
