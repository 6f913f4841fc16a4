"""Exports: .keras, .tflite (float and full-integer int8) and .onnx of trained nets agree with
each other on the same inputs, carry their metadata, and go through `nnmpc compile`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnmpc.compiler import compile_model
from nnmpc.host.learn.datasets import make_dataset
from nnmpc.host.errors import NnmpcError
from nnmpc.host.learn.export import export_all, representative_subset, run_onnx, run_tflite
from nnmpc.host.plants import get_plant
from nnmpc.host.learn.train import train_gru, train_mlp
from support import build_host

# name: (plant, kind, GRU units, int8 tolerances as fractions of each output's validation
# range: (max abs error, RMSE)). Full-integer models quantise the whole input vector with one
# scale, so a regressor mixing units of very different ranges (MSD: mm, mm/s and N) loses
# resolution on its small-range entries; its tolerance is stated separately.
CASES = {
    "tendon_fk": ("tendon", "fk", None, (0.03, 0.01)),
    "hasel_narx": ("hasel", "narx", None, (0.03, 0.01)),
    "msd_narx": ("msd", "narx", None, (0.08, 0.03)),
    "msd_narx_gru": ("msd", "narx", 8, (0.12, 0.04)),
}
FLOAT_TOL = 1e-5  # max |a - b| / (1 + max |b|) per output channel


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory):
    name = request.param
    plant_name, kind, gru, int8_tol = CASES[name]
    p = get_plant(plant_name)
    lags = p.default_net.lags
    window = max(lags) if gru else None
    ds = make_dataset(p, kind, 1500, seed=0, lags=lags, gru_window=window)
    if gru:
        res = train_gru(ds.x_train, ds.y_train, ds.x_val, ds.y_val, units=gru, hidden=(8,),
                        epochs=8, batch_size=32)
    else:
        res = train_mlp(ds.x_train, ds.y_train, ds.x_val, ds.y_val, hidden=(16, 16), epochs=10,
                        batch_size=32, skip=kind != "fk")
    out = tmp_path_factory.mktemp(name)
    meta = {**p.describe(), "kind": kind, "lags": {"ny": lags[0], "nu": lags[1]}}
    rep = representative_subset(ds.x_train, 200, y=ds.y_train)
    files = export_all(res.model, out, name, meta, rep)
    return dict(name=name, plant=p, ds=ds, model=res.model, out=out, files=files,
                int8_tol=int8_tol, x=ds.x_val[:300])


def channel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a - b) / (1.0 + np.abs(b).max(axis=0))).max())


def test_files_are_written(exported):
    n = exported["name"]
    assert sorted(f.name for f in exported["files"]) == sorted(
        [f"{n}.keras", f"{n}.tflite", f"{n}_int8.tflite", f"{n}.onnx", f"{n}.json"])
    assert sorted(p.name for p in exported["out"].iterdir()) == sorted(
        f.name for f in exported["files"])


def test_float_tflite_and_onnx_agree_with_keras(exported):
    x, model, n, out = exported["x"], exported["model"], exported["name"], exported["out"]
    y_keras = model.predict(x, verbose=0)
    y_tfl = run_tflite(out / f"{n}.tflite", x)
    y_onnx = run_onnx(out / f"{n}.onnx", x)
    assert channel_err(y_tfl, y_keras) <= FLOAT_TOL
    assert channel_err(y_onnx, y_keras) <= FLOAT_TOL
    assert channel_err(y_onnx, y_tfl) <= FLOAT_TOL
    # And the reloaded .keras file is the same model.
    import keras

    again = keras.models.load_model(out / f"{n}.keras")
    assert np.array_equal(again.predict(x, verbose=0), y_keras)


def test_int8_tflite_is_full_integer_and_within_stated_tolerance(exported):
    from ai_edge_litert.interpreter import Interpreter

    x, model, n, out = exported["x"], exported["model"], exported["name"], exported["out"]
    it = Interpreter(model_path=str(out / f"{n}_int8.tflite"))
    assert it.get_input_details()[0]["dtype"] == np.int8
    assert it.get_output_details()[0]["dtype"] == np.int8
    weights = [t for t in it.get_tensor_details() if len(t["shape"]) == 2 and t["shape"].min() > 1]
    assert weights and all(t["dtype"] == np.int8 for t in weights)

    y_keras = model.predict(x, verbose=0)
    y_q = run_tflite(out / f"{n}_int8.tflite", x)
    span = exported["ds"].y_val.max(axis=0) - exported["ds"].y_val.min(axis=0)
    max_tol, rmse_tol = exported["int8_tol"]
    err = np.abs(y_q - y_keras) / span
    assert err.max() <= max_tol, err.max(axis=0)
    assert np.sqrt((err ** 2).mean(axis=0)).max() <= rmse_tol
    # Not trivially equal: quantisation did happen.
    assert err.max() > 1e-5


def test_metadata_describes_inputs_outputs_units_limits_and_rate(exported):
    n, p = exported["name"], exported["plant"]
    meta = json.loads((exported["out"] / f"{n}.json").read_text())
    assert meta["sample_rate_hz"] == pytest.approx(1.0 / p.dt)
    assert [i["name"] for i in meta["inputs"]] == [s.name for s in p.inputs]
    assert [o["unit"] for o in meta["outputs"]] == [s.unit for s in p.outputs]
    assert meta["inputs"][0]["low"] == p.inputs[0].low
    assert meta["inputs"][0]["high"] == p.inputs[0].high
    assert meta["lags"]["ny"] == p.default_net.lags[0]
    q = meta["files"]["int8"]
    assert q["input"]["dtype"] == "int8" and q["input"]["scale"] > 0
    assert q["calibration_samples"] == 200
    assert meta["files"]["tflite"]["input"]["dtype"] == "float32"


INT8_HARNESS = r"""
/* Reads N rows of float inputs on stdin, writes NAME_predict's float outputs on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include "net.h"
int main(int argc, char **argv)
{
    static float x[NET_INPUT_SIZE], y[NET_OUTPUT_SIZE];
    long n = argc > 1 ? atol(argv[1]) : 0, i;
    for (i = 0; i < n; ++i) {
        if (fread(x, sizeof(float), NET_INPUT_SIZE, stdin) != NET_INPUT_SIZE) return 1;
        net_predict(x, y);
        fwrite(y, sizeof(float), NET_OUTPUT_SIZE, stdout);
    }
    return 0;
}
"""


def run_int8_c(model_dir, x: np.ndarray, n_out: int) -> np.ndarray:
    import subprocess

    from support import HOST_CFLAGS

    src = model_dir.parent / "int8_harness.c"
    src.write_text(INT8_HARNESS)
    exe = model_dir.parent / "int8_harness"
    subprocess.run(["cc", *HOST_CFLAGS, f"-I{model_dir}", str(src),
                    *map(str, sorted(model_dir.glob("*.c"))), "-o", str(exe), "-lm"],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe), str(len(x))],
                         input=np.ascontiguousarray(x, np.float32).tobytes(),
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype=np.float32).reshape(len(x), n_out)


@pytest.mark.parametrize("fmt", ["keras", "tflite", "onnx", "int8"])
def test_exports_go_through_nnmpc_compile(exported, fmt, tmp_path):
    """Each export compiled to C, built with the host cc and run against its own runtime."""
    n, out, x = exported["name"], exported["out"], exported["x"]
    path = out / {"keras": f"{n}.keras", "tflite": f"{n}.tflite", "onnx": f"{n}.onnx",
                  "int8": f"{n}_int8.tflite"}[fmt]
    compile_model(path, tmp_path / "c", name="net")
    x_flat = x.reshape(len(x), -1)
    n_out = exported["ds"].y_val.shape[1]
    if fmt == "int8":
        # The generated float wrapper quantises, runs the integer model and dequantises:
        # it must match the TFLite interpreter to within one output quantisation step.
        from ai_edge_litert.interpreter import Interpreter

        scale = Interpreter(model_path=str(path)).get_output_details()[0]["quantization"][0]
        y_c = run_int8_c(tmp_path / "c", x_flat, n_out)
        y_ref = run_tflite(path, x)
        assert np.abs(y_c - y_ref).max() <= 1.001 * scale
        return
    host = build_host(tmp_path / "c", "net", x_flat.shape[1], n_out)
    y_c = host.predict(x_flat)
    y_ref = exported["model"].predict(x, verbose=0)
    assert channel_err(y_c, y_ref) <= FLOAT_TOL


def test_failed_export_leaves_nothing_behind(tmp_path):
    from nnmpc.host.learn.train import mlp

    model = mlp(2, 1, [4], "tanh")
    out = tmp_path / "o"
    with pytest.raises(NnmpcError, match="unknown export format 'bogus'"):
        export_all(model, out, "m", {}, np.zeros((4, 2), np.float32), formats=("keras", "bogus"))
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("plant", ["arm2", "msd", "tendon"])  # hasel: tests/test_train.py
def test_every_plant_trains_from_the_cli_and_its_exports_compile(plant, tmp_path, capsys):
    from nnmpc.host.cli import main

    out = tmp_path / "models"
    assert main(["train", "--plant", plant, "--epochs", "3", "--samples", "400",
                 "--out", str(out)]) == 0
    assert f"Summary: {plant}" in capsys.readouterr().out
    meta = json.loads(next(out.glob("*.json")).read_text())
    assert meta["plant"] == plant and meta["kind"] == get_plant(plant).default_net.kind
    assert len(meta["validation"]["rmse"]) == len(get_plant(plant).outputs)
    for model in sorted(out.glob("*.onnx")) + sorted(out.glob("*int8.tflite")):
        compile_model(model, tmp_path / model.stem, name="net")
        h = (tmp_path / model.stem / "net.h").read_text()
        assert f"#define NET_INPUT_SIZE {len(meta['model_inputs'])}" in h
        assert f"#define NET_OUTPUT_SIZE {len(meta['model_outputs'])}" in h
