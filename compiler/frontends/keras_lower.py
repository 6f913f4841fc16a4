"""Keras layers with no IR op of their own, lowered onto the existing ones (so that the C
runtime and the Jacobian code need nothing new): Embedding, Dot, Conv3D and the 3-D pools.

Each function has the signature of a converter in :data:`.keras.LAYERS`
(``(builder, layer spec, config, input tensors) -> output tensor``). The helpers they share
with the rest of the Keras front-end are read from :mod:`.keras` when called.
"""

from __future__ import annotations

import numpy as np

from . import keras as K


# ---- Embedding ------------------------------------------------------------------------------

def _above(t: float | None, always: bool = False) -> tuple[float, float]:
    """Weight and bias of a dense whose hard_sigmoid clip(w x + b, 0, 1) is 1 where x > t and
    0 elsewhere, exactly (as ``keras._step``: w a power of two so large that the next float
    above t already gives w (x - t) >= 1; w x and w t are exact in float32 and the rounding of
    their difference is monotone). ``t=None``: the constant 1 (``always``) or 0."""
    if t is None:
        return 0.0, 1.0 if always else 0.0
    _, exp = np.frexp(abs(t))
    a = float(2.0 ** (25 - int(exp)))
    return a, -a * float(t)


def embedding(b, layer, cfg: dict, inputs: list[str]) -> str:
    """Embedding: ``table[trunc(x)]`` (Keras casts the float indices to int32, truncating,
    and reads a negative index from the end of the table), exactly, from exact 0/1 steps.

    For each index value ``x``: the steps ``p_r = [x > lo_r]`` and ``q_r = [x > hi_r]`` (a
    dense of one input with a fused hard_sigmoid), ``p - q`` is the one-hot of the table row
    (once for ``trunc(x) = r``, once for ``r - V``; their sum is 0 or 1 exactly), and a dense
    by the table reads the row (one non-zero term). The output is the row itself, bit for bit;
    the Jacobian is zero (the output is piecewise constant; TensorFlow has no gradient through
    the index cast either). Indices outside ``[-V, V)``, where Keras raises, read the first or
    the last row."""
    name = cfg["name"]
    (x,) = inputs
    extra = sorted(set(layer.weights) - {"embeddings"})
    if extra or cfg.get("quantization_config") or cfg.get("lora_rank"):
        b.fail(name, f"Embedding with weights {', '.join(extra) or 'embeddings'} "
                     f"(quantization_config={cfg.get('quantization_config')}, "
                     f"lora_rank={cfg.get('lora_rank')}) is not supported "
                     "(supported: a float table)")
    table = np.asarray(layer.weight(b, "embeddings"), np.float32)
    if table.ndim != 2:
        b.fail(name, f"Embedding table of shape {table.shape} is not supported")
    V, D = table.shape
    shape = b.shape(x)
    n = b.tensors[x].size

    def below(k: int) -> float:          # the largest float32 below k: x >= k iff x > below(k)
        return float(np.nextafter(np.float32(k), np.float32(-np.inf)))

    # rows r = 0..V-1 for trunc(x) = r (x > lo, not x > hi), then for trunc(x) = r - V
    lo = [-1.0] + [below(r) for r in range(1, V)]
    hi = lo[1:] + [None]                                  # x >= V: the last row (clamped)
    lo_neg = [None] + [float(-(V - r) - 1) for r in range(1, V)]   # x <= -V - 1: row 0
    hi_neg = [float(-(V - r)) for r in range(V)]
    p = [_above(t, always=True) for t in lo + lo_neg]
    q = [_above(t) for t in hi + hi_neg]
    col = b.add_node("reshape", name, [x], (n, 1))
    hs = {"alpha": 1.0, "beta": 0.0}
    tp = K._dense_node(b, name, col, np.array([[w] for w, _ in p]), np.array([c for _, c in p]),
                       "hard_sigmoid", hs)
    tq = K._dense_node(b, name, col, np.array([[w] for w, _ in q]), np.array([c for _, c in q]),
                       "hard_sigmoid", hs)
    d = b.add_node("sub", name, [tp, tq], (n, 2 * V))
    pos = b.add_node("slice", name, [d], (n, V), axis=1, start=0, stop=V)
    neg = b.add_node("slice", name, [d], (n, V), axis=1, start=V, stop=2 * V)
    onehot = b.add_node("add", name, [pos, neg], (n, V))
    y = K._dense_node(b, name, onehot, table.T, np.zeros(D))
    return b.add_node("reshape", name, [y], tuple(shape) + (D,))


# ---- Dot ------------------------------------------------------------------------------------

def _to_last(b, name: str, x: str, ax: int) -> str:
    """x with axis ``ax`` moved to the end (the others in order)."""
    shape = b.shape(x)
    nd = len(shape)
    if ax == nd - 1:
        return x
    perm = [i for i in range(nd) if i != ax] + [ax]
    return b.add_node("transpose", name, [x], tuple(shape[i] for i in perm), perm=perm)


def _sum_last(b, name: str, x: str, kind: str = "linear", bias: float = 0.0) -> str:
    """The sum over the last axis (a dense by ones), as shape (..., 1)."""
    J = b.shape(x)[-1]
    return K._dense_node(b, name, x, np.ones((1, J)), np.full(1, bias), kind)


def _l2_normalize_last(b, name: str, x: str) -> str:
    """Keras' normalize on the last axis: x * min(rsqrt(sum x^2), 1 / 1e-7), as
    x * exp(-log(max(sum x^2, 1e-14)) / 2) (max(s, e) = e + relu(s - e))."""
    shape = b.shape(x)
    J = shape[-1]
    eps2 = 1e-14
    sq = b.add_node("mul", name, [x, x], shape)
    s = _sum_last(b, name, sq, "relu", -eps2)
    s = b.add_node("add", name, [s, b.const(name, "eps2", [eps2])], b.shape(s))
    lg = b.add_node("activation", name, [s], b.shape(s), activation="log")
    lg = b.add_node("mul", name, [lg, b.const(name, "minus_half", [-0.5])], b.shape(s))
    r = b.add_node("activation", name, [lg], b.shape(s), activation="exponential")
    if J > 1:
        r = b.add_node("concat", name, [r] * J, shape, axis=len(shape) - 1)
    return b.add_node("mul", name, [x, r], shape)


def dot(b, layer, cfg: dict, inputs: list[str]) -> str:
    """Dot(axes): Keras' batch_dot, out[p, q] = sum_j X[p, j] Y[q, j] over x's other axes p
    and y's other axes q (in order; (1,) if neither has any). Both are brought to (P, Q, J)
    by copies (concatenations), multiplied element-wise and summed by a dense of ones.
    ``normalize=True``: each input divided by its L2 norm along its axis first."""
    name = cfg["name"]
    if len(inputs) != 2:
        b.fail(name, f"Dot of {len(inputs)} inputs is not supported (supported: 2)")
    x, y = inputs
    sx, sy = b.shape(x), b.shape(y)
    nx, ny = len(sx) + 1, len(sy) + 1            # Keras ranks count the batch axis
    axes = cfg["axes"]
    if isinstance(axes, int):
        axes = [axes % nx, axes % ny] if axes < 0 else [axes, axes]
    else:
        axes = [int(a) % n if int(a) < 0 else int(a) for a, n in zip(axes, (nx, ny))]
    if len(axes) != 2 or 0 in axes or axes[0] >= nx or axes[1] >= ny:
        b.fail(name, f"Dot with axes={cfg['axes']} on shapes {sx} and {sy} is not supported")
    ax, ay = axes[0] - 1, axes[1] - 1
    if sx[ax] != sy[ay]:
        b.fail(name, f"Dot with axes={cfg['axes']}: sizes {sx[ax]} and {sy[ay]} differ")
    J = sx[ax]
    xt, yt = _to_last(b, name, x, ax), _to_last(b, name, y, ay)
    if cfg.get("normalize"):
        xt, yt = _l2_normalize_last(b, name, xt), _l2_normalize_last(b, name, yt)
    rest_x = tuple(d for i, d in enumerate(sx) if i != ax)
    rest_y = tuple(d for i, d in enumerate(sy) if i != ay)
    P, Q = int(np.prod(rest_x, dtype=np.int64)), int(np.prod(rest_y, dtype=np.int64))
    xr = b.add_node("reshape", name, [xt], (P, 1, J))
    if Q > 1:
        xr = b.add_node("concat", name, [xr] * Q, (P, Q, J), axis=1)
    yr = b.add_node("reshape", name, [yt], (1, Q * J))
    if P > 1:
        yr = b.add_node("concat", name, [yr] * P, (P, Q * J), axis=0)
    yr = b.add_node("reshape", name, [yr], (P, Q, J))
    prod = b.add_node("mul", name, [xr, yr], (P, Q, J))
    s = _sum_last(b, name, prod)
    return b.add_node("reshape", name, [s], (rest_x + rest_y) or (1,))


# ---- 3-D layers: a (D, H, W, C) volume as D images (H, W, C) -----------------------------

def refuse_theano_kernel(b, name: str, cls: str) -> None:
    """Keras 2 stored the kernels of Conv3D and Conv2DTranspose flipped in Theano-backend
    files (and flipped them back when loading on another backend), which is not undone here:
    refused rather than computed with a flipped kernel."""
    if b.dialect.legacy and "theano backend" in b.dialect.origin:
        b.fail(name, f"{cls} from a Theano-backend file is not supported (its kernel is "
                     "stored flipped)")


def pool3d(b, layer, cfg: dict, inputs: list[str]) -> str:
    """MaxPooling3D/AveragePooling3D as two 2-D pools, which is exact because a box pool is
    separable: the volume as an image (D, H, W C) pooled over (D, H), then the result as an
    image (D' H', W, C) pooled over W. (An average over the cells inside the input, as
    TensorFlow takes it at 'same' borders, is an average of averages: the count of a box is
    the product of its counts per axis.)"""
    name = cfg["name"]
    (x,) = inputs
    D, H, W, C = b.shape(x)
    kind = "max" if "Max" in layer.cls else "avg"
    ks = K._tuple(cfg["pool_size"], 3)
    st = K._tuple(cfg.get("strides") or cfg["pool_size"], 3)
    padding = cfg.get("padding", "valid")
    if padding not in ("valid", "same"):
        b.fail(name, f"padding '{padding}' is not supported (supported: valid, same)")
    out_sp, pads = K._geometry(b, name, (D, H, W), ks, st, (1, 1, 1), padding)
    Do, Ho, Wo = out_sp
    t = b.add_node("reshape", name, [x], (D, H, W * C))
    t = b.add_node("pool", name, [t], (Do, Ho, W * C), kind=kind, rank=2, out_spatial=(Do, Ho),
                   kernel=ks[:2], strides=st[:2], pads=pads[:2])
    t = b.add_node("reshape", name, [t], (Do * Ho, W, C))
    t = b.add_node("pool", name, [t], (Do * Ho, Wo, C), kind=kind, rank=2,
                   out_spatial=(Do * Ho, Wo), kernel=(1, ks[2]), strides=(1, st[2]),
                   pads=(0, pads[2]))
    return b.add_node("reshape", name, [t], (Do, Ho, Wo, C))


def conv3d(b, layer, cfg: dict, inputs: list[str]) -> str:
    """Conv3D (valid, same; strides, dilation_rate) as one 2-D conv per output depth: the
    volume transposed once to an image (H, W, D C) with the depths as channel blocks; per
    output depth, the blocks of the depths its kernel reaches inside the volume ('same' pads
    with zeros: the others are left out) sliced out, (H, W, n C), and convolved by the
    kernel's slices stacked the same way, (out_c, kh, kw, n C); the output depths joined."""
    name = cfg["name"]
    (x,) = inputs
    K._check_channels_last(b, cfg)
    shape = b.shape(x)
    if len(shape) != 4:
        b.fail(name, f"Conv3D expects a (depth, height, width, channels) input, got {shape}")
    if int(cfg.get("groups", 1)) != 1:
        b.fail(name, f"Conv3D with groups={cfg['groups']} is not supported (supported: 1)")
    refuse_theano_kernel(b, name, "Conv3D")
    D, H, W, C = shape
    kernel = np.asarray(layer.weight(b, "kernel"), np.float32)      # (kd, kh, kw, cin, cout)
    if kernel.ndim != 5 or kernel.shape[3] != C:
        b.fail(name, f"Conv3D kernel {kernel.shape} does not match {C} input channels")
    cout = kernel.shape[-1]
    bias = (np.asarray(layer.weight(b, "bias"), np.float32) if cfg.get("use_bias", True)
            else np.zeros(cout, np.float32))
    ks = K._tuple(cfg["kernel_size"], 3)
    st = K._tuple(cfg["strides"], 3)
    dl = K._tuple(cfg.get("dilation_rate", 1), 3)
    padding = cfg.get("padding", "valid")
    if padding not in ("valid", "same"):
        b.fail(name, f"padding '{padding}' is not supported (supported: valid, same)")
    out_sp, pads = K._geometry(b, name, shape[:-1], ks, st, dl, padding)
    Do, Ho, Wo = out_sp
    kind, attrs = K._act(b, cfg.get("activation"), name)
    fused = kind if kind != "softmax" else "linear"
    img = b.add_node("transpose", name, [x], (H, W, D, C), perm=[1, 2, 0, 3])
    img = b.add_node("reshape", name, [img], (H, W, D * C))
    blocks: dict[tuple[int, int], str] = {}

    def depths(z0: int, n: int) -> str:
        """Depths z0 .. z0 + n - 1 of the volume as (H, W, n C)."""
        if n == D:
            return img
        if (z0, n) not in blocks:
            blocks[(z0, n)] = b.add_node("slice", name, [img], (H, W, n * C), axis=2,
                                         start=z0 * C, stop=(z0 + n) * C)
        return blocks[(z0, n)]

    rows = []
    for o in range(Do):
        taps = [k for k in range(ks[0]) if 0 <= o * st[0] - pads[0] + k * dl[0] < D]
        if not taps:   # every tap in the zero padding: the activation of the bias
            from ..reference import activation
            val = activation(np.broadcast_to(bias, (1, Ho, Wo, cout)), fused, **(
                attrs if fused != "linear" else {}))
            rows.append(b.const(name, "bias_only", val))
            continue
        zs = [o * st[0] - pads[0] + k * dl[0] for k in taps]
        if dl[0] == 1:
            xin = depths(zs[0], len(zs))
        else:
            xin = depths(zs[0], 1) if len(zs) == 1 else b.add_node(
                "concat", name, [depths(z, 1) for z in zs], (H, W, len(zs) * C), axis=2)
        Wk = np.transpose(kernel[taps], (4, 1, 2, 0, 3)).reshape(cout, ks[1], ks[2],
                                                                 len(taps) * C)
        y = b.add_node("conv", name, [xin, b.const(name, "W", Wk), b.const(name, "b", bias)],
                       (Ho, Wo, cout), rank=2, out_spatial=(Ho, Wo), strides=st[1:],
                       dilations=dl[1:], pads=pads[1:], groups=1, activation=fused,
                       **(attrs if fused != "linear" else {}))
        rows.append(b.add_node("reshape", name, [y], (1, Ho, Wo, cout)))
    y = rows[0] if Do == 1 else b.add_node("concat", name, rows, (Do, Ho, Wo, cout), axis=0)
    if kind == "softmax":
        y = K._apply_act(b, y, kind, {}, name)
    return y
