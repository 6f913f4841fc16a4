"""The net a run uses: a model file compiled, a compiled folder, or the plant's default net
trained (and cached) on the spot; its kind and lags read off its sizes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from ..plants import Plant
from .setups import PlantSetup, setup_for


@dataclass
class NetInfo:
    model_dir: Path       # holds model.c / model.h
    kind: str
    na: int
    nb: int
    n_in: int
    n_out: int
    note: str = ""


def infer_lags(plant: Plant, n_in: int, n_out: int) -> tuple[str, int, int]:
    p, m = len(plant.outputs), len(plant.inputs)
    if n_out != p:
        raise NnmpcError(f"the net has {n_out} outputs; plant '{plant.name}' has {p}")
    if n_in == m:
        return "fk", 0, 1
    for lag in range(1, 9):
        if lag * (p + m) == n_in:
            return "narx", lag, lag
    raise NnmpcError(f"a net with {n_in} inputs is neither a forward-kinematics net ({m} inputs) "
                     f"nor a NARX net [y lags, u lags] for {p} outputs and {m} inputs")


def _model_sizes(model_dir: Path) -> tuple[int, int]:
    text = (model_dir / "model.h").read_text()
    n_in = int(re.search(r"#define MODEL_INPUT_SIZE (\d+)", text).group(1))
    n_out = int(re.search(r"#define MODEL_OUTPUT_SIZE (\d+)", text).group(1))
    return n_in, n_out


def prepare_model(plant: Plant, model: str | None, work: Path, seed: int = 0,
                  log=print, kind: str | None = None) -> NetInfo:
    """Compile ``model`` (a model file, or a folder with model.c) or train the plant's default
    net (of ``kind``, if given) when it is None. Trained nets are cached under ``work``."""
    from nnmpc.compiler import compile_model

    work.mkdir(parents=True, exist_ok=True)
    if model is None:
        st = setup_for(plant, kind)
        key = f"{plant.name}-{st.kind}-{st.lags[0]}{st.lags[1]}-" \
              f"{'x'.join(map(str, st.hidden))}{'s' if st.skip else ''}-{st.samples}-{st.epochs}-{seed}"
        d = work / "nets" / key
        if not (d / "model" / "model.c").is_file():
            log(f"training a default {st.kind} net for '{plant.name}' "
                f"({'x'.join(map(str, st.hidden))} tanh{', linear skip' if st.skip else ''}, "
                f"{st.samples} samples)")
            info = train_default(plant, d, seed, st)
            log(f"  validation RMSE {np.array2string(info, precision=3)}")
        model_dir = d / "model"
    else:
        mp = Path(model)
        if (mp / "model.c").is_file():
            model_dir = mp
        elif mp.is_file():
            model_dir = work / "model"
            compile_model(mp, model_dir, name="model")
        else:
            raise NnmpcError(f"--model {model}: no such model file or compiled folder")
    n_in, n_out = _model_sizes(model_dir)
    kind, na, nb = infer_lags(plant, n_in, n_out)
    return NetInfo(model_dir, kind, na, nb, n_in, n_out)


def train_default(plant: Plant, out: Path, seed: int = 0,
                  st: PlantSetup | None = None) -> np.ndarray:
    """Train the plant's default closed-loop net into ``out/model``; return its val RMSE."""
    from nnmpc.compiler import compile_model

    from ..learn.datasets import make_dataset
    from ..learn.train import train_mlp

    st = st or setup_for(plant)
    ds = make_dataset(plant, st.kind, st.samples, seed=seed, lags=st.lags if st.kind == "narx"
                      else (2, 2))
    res = train_mlp(ds.x_train, ds.y_train, ds.x_val, ds.y_val, hidden=st.hidden,
                    epochs=st.epochs, seed=seed, patience=25, skip=st.skip)
    out.mkdir(parents=True, exist_ok=True)
    res.model.save(out / "m.keras")
    compile_model(out / "m.keras", out / "model", name="model")
    (out / "train.json").write_text(json.dumps({"val_rmse": res.val_rmse.tolist(),
                                                "epochs": res.epochs}) + "\n")
    return res.val_rmse
