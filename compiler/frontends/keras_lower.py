"""Keras layers with no IR op of their own, lowered onto the existing ones (so that the C
runtime and the Jacobian code need nothing new): Embedding, Dot, Conv3D and the 3-D pools.

Each function has the signature of a converter in :data:`.keras.LAYERS`
(``(builder, layer spec, config, input tensors) -> output tensor``). The helpers they share
with the rest of the Keras front-end come from :mod:`.keras_ops`.
"""

from __future__ import annotations

import numpy as np

from . import keras_ops as K

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


# ---- Lambda layers that are linear maps -----------------------------------------------------
# A Lambda's function is Python bytecode: nothing of it is read. It is evaluated on numbers
# (which runs the file's code: only with allow_lambda), checked to be linear, and its matrix
# is probed exactly with the basis vectors.

#: The largest Lambda input probed (values, batch aside): the matrix is in x out floats.
LAMBDA_MAX_INPUT = 4096


def _lambda_eval(b, name: str, layer, X: np.ndarray) -> list[np.ndarray]:
    import keras  # noqa: PLC0415  (loaded already: the layer comes from it)

    try:
        y = layer(keras.ops.convert_to_tensor(X))
        ys = list(y) if isinstance(y, (list, tuple)) else [y]
        out = [np.asarray(keras.ops.convert_to_numpy(t)) for t in ys]
    except Exception as e:  # noqa: BLE001  (the file's own code: any error)
        b.fail(name, f"Lambda '{name}' could not be evaluated on an input of shape "
                     f"{X.shape[1:]} ({K.one_line(e)})")
    for t in out:
        if t.ndim < 1 or t.shape[0] != len(X) or not np.issubdtype(t.dtype, np.floating):
            b.fail(name, f"Lambda '{name}' does not map a batch of float inputs to a batch of "
                         "float outputs; nnmpc compiles only linear Lambda layers (slices, "
                         "reshapes, scalings)")
    return [t.astype(np.float64) for t in out]


def _linear_matrices(b, name: str, layer, shape: tuple[int, ...]):
    """Each output of the Lambda as (M, shape): y = M x on the flattened input, M probed with
    the basis vectors, after checking f(0) == 0, f(a + b) = f(a) + f(b), f(c a) = c f(a)."""
    n = int(np.prod(shape))
    not_linear = (f"Lambda '{name}' is not a linear map of its input; nnmpc compiles only "
                  "linear Lambda layers (slices, reshapes, scalings)")
    rng = np.random.default_rng(0)
    A, B = (rng.uniform(-2, 2, (3,) + shape).astype(np.float32) for _ in range(2))
    c = np.float32(-1.75)
    f0 = _lambda_eval(b, name, layer, np.zeros((2,) + shape, np.float32))
    fa, fb = _lambda_eval(b, name, layer, A), _lambda_eval(b, name, layer, B)
    fab = _lambda_eval(b, name, layer, A + B)
    fca = _lambda_eval(b, name, layer, c * A)
    fE = _lambda_eval(b, name, layer, np.eye(n, dtype=np.float32).reshape((n,) + shape))
    out = []
    for k, (z, ya, yb, yab, yca, ye) in enumerate(zip(f0, fa, fb, fab, fca, fE)):
        tol = 1e-5 * (1.0 + max(np.abs(ya).max(initial=0), np.abs(yb).max(initial=0)))
        M = ye.reshape(n, -1).T
        ok = (all(t.shape[1:] == ye.shape[1:] for t in (z, ya, yb, yab, yca))
              and np.all(np.isfinite(M)) and not np.any(z)
              and np.abs(yab - ya - yb).max(initial=0) <= tol
              and np.abs(yca - c * ya).max(initial=0) <= 2 * tol
              and np.abs(A.reshape(3, n) @ M.T - ya.reshape(3, -1)).max(initial=0) <= tol)
        if not ok:
            b.fail(name, not_linear)
        out.append((M.astype(np.float32), tuple(int(d) for d in ye.shape[1:])))
    if not out:
        b.fail(name, f"Lambda '{name}' returns no tensor")
    return out


def _selection(b, name: str, x: str, sel: np.ndarray, oshape) -> str | None:
    """y = x[sel] (flat indices) as slices, a transpose and a reshape, if it is one."""
    import itertools  # noqa: PLC0415

    shape = b.shape(x)
    idx = np.unravel_index(sel, shape)
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    sub = np.arange(int(np.prod(shape))).reshape(shape)[tuple(slice(l, h) for l, h in zip(lo, hi))]
    if sub.size != sel.size:
        return None
    perms = itertools.permutations(range(len(shape))) if len(shape) <= 6 else [range(len(shape))]
    for perm in perms:
        if not np.array_equal(sub.transpose(perm).ravel(), sel):
            continue
        y = x
        for ax, (l, h) in enumerate(zip(lo, hi)):
            if l > 0 or h < shape[ax]:
                s = list(b.shape(y))
                s[ax] = h - l
                y = b.add_node("slice", name, [y], tuple(s), axis=ax, start=l, stop=h)
        if list(perm) != sorted(perm):
            s = b.shape(y)
            y = b.add_node("transpose", name, [y], tuple(s[p] for p in perm), perm=list(perm))
        if b.shape(y) != tuple(oshape):
            y = b.add_node("reshape", name, [y], tuple(oshape))
        return y
    return None


def _linear_map(b, name: str, x: str, M: np.ndarray, oshape) -> str:
    n_out, n = M.shape
    nz = M != 0
    if n_out and np.all(nz.sum(axis=1) == 1):  # each output a (scaled) input value
        sel = np.argmax(nz, axis=1)
        scale = M[np.arange(n_out), sel]
        y = _selection(b, name, x, sel, oshape)
        if y is not None:
            if np.any(scale != 1):
                y = b.add_node("mul", name, [y, b.const(name, "scale", scale.reshape(oshape))],
                               tuple(oshape))
            elif y == x:  # the identity: a node of its own (a split output may be the input)
                y = b.add_node("reshape", name, [x], tuple(oshape))
            return y
    xf = x if len(b.shape(x)) == 1 else b.add_node("reshape", name, [x], (n,))
    y = K._dense_node(b, name, xf, M, np.zeros(n_out, np.float32))
    return y if tuple(oshape) == (n_out,) else b.add_node("reshape", name, [y], tuple(oshape))


def lambda_layer(b, layer, cfg: dict, inputs: list[str]):
    """A Lambda that is a linear map of its one input: slices, splits (several outputs),
    reshapes, permutations, scalings; each output a selection or a dense of the input."""
    name = cfg["name"]
    fn = cfg.get(LAMBDA_KEY)
    if fn is None:
        b.fail(name, f"Lambda '{name}' is compiled only from a file that Keras 3 loads "
                     "(.keras, or .h5 written by Keras 3), with --allow-lambda")
    if len(inputs) != 1:
        b.fail(name, f"Lambda '{name}' has {len(inputs)} inputs; nnmpc compiles only Lambda "
                     "layers that are linear maps of one input (slices, reshapes, scalings)")
    (x,) = inputs
    shape = b.shape(x)
    n = b.tensors[x].size
    if n > LAMBDA_MAX_INPUT:
        b.fail(name, f"Lambda '{name}' has an input of {n} values (shape {shape}); nnmpc "
                     f"probes Lambda layers of at most {LAMBDA_MAX_INPUT} input values")
    maps = _linear_matrices(b, name, fn, shape)
    outs = [_linear_map(b, name, x, M, oshape) for M, oshape in maps]
    return outs if fn_returns_list(fn, shape) else outs[0]


#: The config key that carries the loaded Keras Lambda layer (set by the Keras 3 reader).
LAMBDA_KEY = "__nnmpc_lambda_layer__"


def fn_returns_list(layer, shape) -> bool:
    """Whether the Lambda returns a list or tuple (a split), even of one tensor."""
    import keras  # noqa: PLC0415

    y = layer(keras.ops.convert_to_tensor(np.zeros((1,) + tuple(shape), np.float32)))
    return isinstance(y, (list, tuple))
