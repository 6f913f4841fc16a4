"""Keras MLPs compiled to C, built with the host cc and compared with Keras itself."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nnmpc.compiler import CompileError, compile_model
from nnmpc.compiler.backend.codegen import c_float
from support import build_host, keras_mlp, rel_err, tape_jacobians

SHAPES = {
    "A_3-32t-32t-3": (3, [(32, "tanh"), (32, "tanh"), (3, "linear")], False),
    "B_6-64r-64r-64r-4": (6, [(64, "relu"), (64, "relu"), (64, "relu"), (4, "linear")], False),
    "sig_2-8s-1": (2, [(8, "sigmoid"), (1, "linear")], False),
    "functional_5-16r-16t-2s": (5, [(16, "relu"), (16, "tanh"), (2, "sigmoid")], True),
}


def gradient_tape_jacobian(model, x: np.ndarray) -> np.ndarray:
    (J,) = tape_jacobians(lambda xt: model(xt[0]), [x])
    return J


@pytest.mark.parametrize("key", sorted(SHAPES))
def test_generated_c_matches_keras(tmp_path, rng, key):
    n_in, layers, functional = SHAPES[key]
    model = keras_mlp(tmp_path / "m.keras", n_in, layers, seed=len(key), functional=functional)
    compile_model(tmp_path / "m.keras", tmp_path / "out", name="net")
    host = build_host(tmp_path / "out", "net", n_in, layers[-1][0])

    x = rng.uniform(-3, 3, size=(1000, n_in)).astype(np.float32)
    y_c, J_c = host.run(x)
    y_k = model.predict(x, verbose=0)
    assert rel_err(y_c, y_k) <= 1e-5

    J_k = gradient_tape_jacobian(model, x[:200])
    assert rel_err(J_c[:200], J_k) <= 1e-4


def test_jacobian_matches_finite_differences_in_float64(tmp_path, rng):
    """An independent check of the Jacobian: central differences of the C predict itself."""
    keras_mlp(tmp_path / "m.keras", 4, [(16, "tanh"), (8, "sigmoid"), (3, "linear")], seed=3)
    compile_model(tmp_path / "m.keras", tmp_path / "out", name="fd")
    host = build_host(tmp_path / "out", "fd", 4, 3)
    x0 = rng.uniform(-1, 1, size=4).astype(np.float32)
    h = 1e-2
    pts = [x0 + h * e for e in np.eye(4, dtype=np.float32)] + [x0 - h * e for e in np.eye(4, dtype=np.float32)]
    y = host.predict(np.array(pts))
    J_fd = ((y[:4] - y[4:]) / (2 * h)).T
    _, J = host.run(x0[None])
    assert np.abs(J[0] - J_fd).max() < 2e-3


def test_output_is_byte_identical_across_runs(tmp_path):
    keras_mlp(tmp_path / "m.keras", 3, [(8, "relu"), (2, "linear")])
    a = compile_model(tmp_path / "m.keras", tmp_path / "a", name="m")
    b = compile_model(tmp_path / "m.keras", tmp_path / "b", name="m")
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_header_contract(tmp_path):
    keras_mlp(tmp_path / "m.keras", 3, [(8, "relu"), (2, "linear")])
    compile_model(tmp_path / "m.keras", tmp_path / "out", name="arm")
    h = (tmp_path / "out" / "arm.h").read_text()
    assert "#define ARM_INPUT_SIZE 3" in h
    assert "#define ARM_OUTPUT_SIZE 2" in h
    assert "void arm_predict(const float *input, float *output);" in h
    c = (tmp_path / "out" / "arm.c").read_text()
    assert "static const float arm_" in c
    assert "malloc" not in c


def test_two_models_link_into_one_program(tmp_path):
    keras_mlp(tmp_path / "a.keras", 3, [(8, "tanh"), (2, "linear")], seed=1)
    keras_mlp(tmp_path / "b.keras", 2, [(4, "relu"), (1, "linear")], seed=2)
    compile_model(tmp_path / "a.keras", tmp_path / "out", name="first")
    compile_model(tmp_path / "b.keras", tmp_path / "out", name="second")
    main = tmp_path / "main.c"
    main.write_text('#include "first.h"\n#include "second.h"\nint main(void){float x[3]={0},y[2];'
                    'float u[2]={0},v[1];first_predict(x,y);second_predict(u,v);return 0;}\n')
    srcs = sorted(str(p) for p in (tmp_path / "out").glob("*.c"))
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", f"-I{tmp_path / 'out'}", str(main), *srcs,
                    "-o", str(tmp_path / "both")], check=True)
    subprocess.run([str(tmp_path / "both")], check=True)


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, 1e-38, 3.4028235e38, 0.1, -123.456, 1.17549435e-38])
def test_float_literals_round_trip(value):
    lit = c_float(value)
    assert lit.endswith("f")
    assert np.float32(float(lit[:-1])) == np.float32(value)


def test_random_float_literals_round_trip(rng):
    vals = rng.standard_normal(2000).astype(np.float32) * np.float32(10.0) ** rng.integers(-30, 30, 2000).astype(np.float32)
    vals = vals[np.isfinite(vals)]
    back = np.array([np.float32(float(c_float(v)[:-1])) for v in vals])
    assert np.array_equal(back, vals)


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnmpc.host.cli", *map(str, args)],
                          capture_output=True, text=True)


def test_unsupported_layer_names_layer_and_type_and_writes_nothing(tmp_path):
    import keras

    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="d0"),
                          keras.layers.LayerNormalization(name="norm_me"),
                          keras.layers.Dense(2, name="d1")])
    m.save(tmp_path / "bad.keras")
    out = tmp_path / "out"
    r = run_cli("compile", tmp_path / "bad.keras", "-o", out)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr
    assert "norm_me" in err[0] and "LayerNormalization" in err[0] and "bad.keras" in err[0]
    assert "Traceback" not in r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_corrupt_and_mislabelled_files(tmp_path):
    keras_mlp(tmp_path / "m.keras", 3, [(4, "relu"), (1, "linear")])
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "trunc.keras").write_bytes(data[: len(data) // 2])
    (tmp_path / "liar.onnx").write_bytes(data)
    (tmp_path / "junk.keras").write_bytes(b"hello world, not a model")
    for name, expect in (("trunc.keras", "corrupt"), ("liar.onnx", "extension"),
                         ("junk.keras", "not a model")):
        out = tmp_path / f"out_{name}"
        r = run_cli("compile", tmp_path / name, "-o", out)
        assert r.returncode != 0, name
        assert expect in r.stderr and name in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert not out.exists()


def test_nan_weights_are_rejected(tmp_path):
    model = keras_mlp(tmp_path / "m.keras", 3, [(4, "relu"), (1, "linear")])
    w = model.get_weights()
    w[0][0, 0] = np.nan
    model.set_weights(w)
    model.save(tmp_path / "nan.keras")
    with pytest.raises(CompileError, match="NaN"):
        compile_model(tmp_path / "nan.keras", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_name_is_rejected(tmp_path):
    keras_mlp(tmp_path / "m.keras", 3, [(4, "relu"), (1, "linear")])
    r = run_cli("compile", tmp_path / "m.keras", "-o", tmp_path / "out", "--name", "2bad-name")
    assert r.returncode != 0 and "not a C identifier" in r.stderr
