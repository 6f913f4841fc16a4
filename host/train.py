"""Train small Keras nets on plant data and export them with normalisation folded in.

The exported model maps raw physical inputs to raw physical outputs: the input scaling is
folded into the first Dense layer and the output scaling into the last, so the
microcontroller never normalises anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .mlenv import import_keras


@dataclass
class Normaliser:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, data: np.ndarray) -> "Normaliser":
        std = data.std(axis=0)
        return cls(data.mean(axis=0), np.where(std > 1e-12, std, 1.0))


@dataclass
class TrainResult:
    model: object            # keras.Model, raw units in and out
    val_rmse: np.ndarray     # per output, physical units
    val_max: np.ndarray
    epochs: int


def mlp(n_in: int, n_out: int, hidden: list[int], activation: str, name: str = "mlp"):
    keras = import_keras()
    x = inp = keras.Input((n_in,), name="u")
    for i, h in enumerate(hidden):
        x = keras.layers.Dense(h, activation=activation, name=f"hidden{i + 1}")(x)
    out = keras.layers.Dense(n_out, name="out")(x)
    return keras.Model(inp, out, name=name)


def fold_normalisation(model, nx: Normaliser, ny: Normaliser):
    """A copy of ``model`` that takes raw inputs and returns raw outputs."""
    keras = import_keras()
    raw = keras.models.clone_model(model)
    raw.set_weights(model.get_weights())
    dense = [l for l in raw.layers if isinstance(l, keras.layers.Dense)]
    W, b = dense[0].get_weights()
    # x_n = (x - m) / s  =>  W^T x_n + b = (W / s)^T x + (b - (m / s) W)
    dense[0].set_weights([W / nx.std[:, None], b - (nx.mean / nx.std) @ W])
    W, b = dense[-1].get_weights()
    # y = y_n * s + m
    dense[-1].set_weights([W * ny.std[None, :], b * ny.std + ny.mean])
    return raw


def train_mlp(x_train, y_train, x_val, y_val, *, hidden=(32, 32), activation="tanh",
              epochs=200, batch_size=64, lr=3e-3, seed=0, patience=20, name="mlp",
              on_epoch: Callable[[int, float, float], None] | None = None) -> TrainResult:
    """Fit an MLP on normalised data with early stopping; return the raw-units model."""
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    nx, ny = Normaliser.fit(x_train), Normaliser.fit(y_train)
    model = mlp(x_train.shape[1], y_train.shape[1], list(hidden), activation, name)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="mse")
    callbacks = [keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)]
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs: on_epoch(e, logs["loss"], logs.get("val_loss", 0.0))))
    hist = model.fit((x_train - nx.mean) / nx.std, (y_train - ny.mean) / ny.std,
                     validation_data=((x_val - nx.mean) / nx.std, (y_val - ny.mean) / ny.std),
                     epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True,
                     callbacks=callbacks)
    raw = fold_normalisation(model, nx, ny)
    err = raw.predict(x_val, verbose=0) - y_val
    return TrainResult(raw, np.sqrt((err ** 2).mean(axis=0)), np.abs(err).max(axis=0),
                       len(hist.history["loss"]))
