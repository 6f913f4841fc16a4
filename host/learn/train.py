"""Train small Keras nets on plant data and export them with normalisation folded in.

The exported model maps raw physical inputs to raw physical outputs: the input scaling is
folded into the first Dense (or GRU input kernel) and the output scaling into the last Dense,
so the microcontroller never normalises anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import NnmpcError
from .mlenv import import_keras

ACTIVATIONS = ("tanh", "relu", "sigmoid", "elu", "softplus", "swish", "gelu", "linear")


@dataclass
class Normaliser:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, data: np.ndarray) -> "Normaliser":
        data = np.asarray(data, dtype=np.float64).reshape(-1, data.shape[-1])
        std = data.std(axis=0)
        return cls(data.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    def __call__(self, data: np.ndarray) -> np.ndarray:
        return ((data - self.mean) / self.std).astype(np.float32)


@dataclass
class TrainResult:
    model: object            # keras.Model, raw units in and out
    val_rmse: np.ndarray     # per output, physical units
    val_max: np.ndarray
    epochs: int
    best_epoch: int = 0
    history: dict = field(default_factory=dict)
    seconds: float = 0.0
    x_norm: Normaliser | None = None  # the scalings folded into the model
    y_norm: Normaliser | None = None


def mlp(n_in: int, n_out: int, hidden: list[int], activation: str, name: str = "mlp",
        skip: bool = False):
    """Dense layers; with ``skip`` a bias-free linear path from input to output is added to
    the last layer's output (``y = W x + MLP(x)``), which suits dynamics, where the next
    output is mostly a linear function of the current ones."""
    keras = import_keras()
    x = inp = keras.Input((n_in,), name="u")
    for i, h in enumerate(hidden):
        x = keras.layers.Dense(h, activation=activation, name=f"hidden{i + 1}")(x)
    out = keras.layers.Dense(n_out, name="out")(x)
    if skip:
        lin = keras.layers.Dense(n_out, use_bias=False, name="linear")(inp)
        out = keras.layers.Add(name="sum")([out, lin])
    return keras.Model(inp, out, name=name)


def gru_net(window: int, n_feat: int, n_out: int, units: int, hidden: list[int],
            activation: str, name: str = "gru"):
    """GRU over a window of ``[y, u]`` rows (oldest first), then Dense layers to ``y[k+1]``.

    The GRU is unrolled (the window is short and fixed), which keeps the .tflite and .onnx
    exports to plain matrix products and element-wise ops, without while-loops.
    """
    keras = import_keras()
    x = inp = keras.Input((window, n_feat), name="seq")
    x = keras.layers.GRU(units, unroll=True, name="gru")(x)
    for i, h in enumerate(hidden):
        x = keras.layers.Dense(h, activation=activation, name=f"hidden{i + 1}")(x)
    out = keras.layers.Dense(n_out, name="out")(x)
    return keras.Model(inp, out, name=name)


def fold_normalisation(model, nx: Normaliser, ny: Normaliser):
    """A copy of ``model`` that takes raw inputs and returns raw outputs."""
    keras = import_keras()
    raw = keras.models.clone_model(model)
    raw.set_weights(model.get_weights())
    linear = next((l for l in raw.layers if l.name == "linear"), None)
    first = next(l for l in raw.layers if l.get_weights() and l is not linear)
    dense = [l for l in raw.layers if isinstance(l, keras.layers.Dense) and l is not linear]
    if isinstance(first, keras.layers.GRU):
        # Every gate sees x W + b_in (reset_after=True keeps the reset gate off the input
        # term), so the input scaling folds into the input kernel and input bias alone.
        W, U, b = first.get_weights()
        b = b.copy()
        b[0] = b[0] - (nx.mean / nx.std) @ W
        first.set_weights([W / nx.std[:, None], U, b])
    else:
        W, b = first.get_weights()
        # x_n = (x - m) / s  =>  W^T x_n + b = (W / s)^T x + (b - (m / s) W)
        first.set_weights([W / nx.std[:, None], b - (nx.mean / nx.std) @ W])
    W, b = dense[-1].get_weights()
    # y = y_n * s + m
    b = b * ny.std + ny.mean
    if linear is not None:
        # y_n += L^T x_n  =>  y += ((L / s_x) * s_y)^T x - s_y * ((m_x / s_x) L)
        (L,) = linear.get_weights()
        linear.set_weights([L / nx.std[:, None] * ny.std[None, :]])
        b = b - ny.std * ((nx.mean / nx.std) @ L)
    dense[-1].set_weights([W * ny.std[None, :], b])
    return raw


def _fit(model, x_train, y_train, x_val, y_val, *, epochs, batch_size, lr, patience, on_epoch):
    import time

    keras = import_keras()
    nx, ny = Normaliser.fit(x_train), Normaliser.fit(y_train)
    linear = next((l for l in model.layers if l.name == "linear"), None)
    if linear is not None:
        # Start at the least-squares linear fit, with the MLP's output layer at zero: the
        # MLP then only learns what the linear model misses.
        L, *_ = np.linalg.lstsq(nx(x_train), ny(y_train), rcond=None)
        linear.set_weights([L.astype(np.float32)])
        out = model.get_layer("out")
        out.set_weights([np.zeros_like(w) for w in out.get_weights()])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="mse")
    # Halve the step when validation stalls (Adam's noise floor otherwise limits the fit
    # long before the model does), stop when it stalls for good and keep the best weights.
    callbacks = [keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=max(2, patience // 4),
                                                   min_lr=lr / 200),
                 keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)]
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs: on_epoch(e, logs["loss"], logs.get("val_loss", 0.0))))
    t0 = time.monotonic()
    hist = model.fit(nx(x_train), ny(y_train), validation_data=(nx(x_val), ny(y_val)),
                     epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True,
                     callbacks=callbacks)
    seconds = time.monotonic() - t0
    raw = fold_normalisation(model, nx, ny)
    err = raw.predict(x_val, verbose=0, batch_size=4096) - y_val
    vl = hist.history.get("val_loss", [0.0])
    return TrainResult(raw, np.sqrt((err ** 2).mean(axis=0)), np.abs(err).max(axis=0),
                       len(hist.history["loss"]), int(np.argmin(vl)) + 1,
                       {k: [float(v) for v in vs] for k, vs in hist.history.items()
                        if k in ("loss", "val_loss")}, seconds, nx, ny)


def _check(hidden, activation, epochs):
    if activation not in ACTIVATIONS:
        raise NnmpcError(f"unknown activation '{activation}' (known: {', '.join(ACTIVATIONS)})")
    if any(int(h) < 1 for h in hidden):
        raise NnmpcError(f"hidden sizes must be positive, got {','.join(map(str, hidden))}")
    if epochs < 1:
        raise NnmpcError("--epochs must be at least 1")


def train_mlp(x_train, y_train, x_val, y_val, *, hidden=(32, 32), activation="tanh",
              epochs=200, batch_size=64, lr=3e-3, seed=0, patience=20, name="mlp",
              on_epoch: Callable[[int, float, float], None] | None = None,
              skip: bool = False) -> TrainResult:
    """Fit an MLP (with a linear skip path if ``skip``) on normalised data with early
    stopping; return the raw-units model."""
    _check(hidden, activation, epochs)
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    model = mlp(x_train.shape[1], y_train.shape[1], list(hidden), activation, name, skip)
    return _fit(model, x_train, y_train, x_val, y_val, epochs=epochs, batch_size=batch_size,
                lr=lr, patience=patience, on_epoch=on_epoch)


def train_gru(x_train, y_train, x_val, y_val, *, units=16, hidden=(), activation="tanh",
              epochs=200, batch_size=64, lr=3e-3, seed=0, patience=20, name="gru",
              on_epoch: Callable[[int, float, float], None] | None = None) -> TrainResult:
    """Fit a GRU(+MLP head) on windows ``(N, window, features)``; return the raw-units model."""
    _check(hidden, activation, epochs)
    if units < 1:
        raise NnmpcError("--gru must be at least 1 unit")
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    model = gru_net(x_train.shape[1], x_train.shape[2], y_train.shape[1], units, list(hidden),
                    activation, name)
    return _fit(model, x_train, y_train, x_val, y_val, epochs=epochs, batch_size=batch_size,
                lr=lr, patience=patience, on_epoch=on_epoch)


def free_run(model, ds, ny: int, nu: int, gru_window: int | None = None):
    """Run a NARX net as a simulator on the validation trajectories: after the first ``lag``
    measured samples it sees only its own predictions. Returns ``(predicted, measured)``,
    both ``(n_val_traj, T - lag + 1, n_outputs)``, aligned with the one-step targets."""
    from .datasets import narx_features, narx_sequences

    u = ds.traj_u[ds.traj_val].astype(np.float64)
    y_true = ds.traj_y[ds.traj_val][:, :u.shape[1] + 1].astype(np.float64)
    lag = gru_window or max(ny, nu)
    y = y_true.copy()
    for k in range(lag - 1, u.shape[1]):
        yh, uh = y[:, k - lag + 1:k + 1], u[:, k - lag + 1:k + 1]
        if gru_window:
            feats = narx_sequences(yh, uh, gru_window)[:, -1]
        else:
            feats = narx_features(yh, uh, ny, nu)[:, -1]
        y[:, k + 1] = np.asarray(model(feats.astype(np.float32), training=False))
    return y[:, lag:], y_true[:, lag:]


def free_run_rmse(model, ds, ny: int, nu: int, gru_window: int | None = None) -> np.ndarray:
    """RMSE (per output, physical units) of :func:`free_run` against the measurements."""
    pred, true = free_run(model, ds, ny, nu, gru_window)
    return np.sqrt(((pred - true) ** 2).mean(axis=(0, 1)))
