"""The model zoo compiled to C: every op, activation and format against its reference runtime.

Float outputs are compared with Keras, onnxruntime or the TFLite interpreter within
1e-5 * (1 + |y|); Jacobians with TensorFlow's GradientTape within 1e-4 * (1 + |J|); int8 outputs
must equal the TFLite reference interpreter's bit for bit. The whole zoo is cross-compiled for
Cortex-M4F and a sample runs in QEMU.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nnmpc.compiler import compile_model, load_model
from nnmpc.compiler.ir import ACTIVATIONS, OPS
from nnmpc.compiler.passes import optimise
from support import HARNESS, HOST_CFLAGS, HostModel, have, rel_err, tape_jacobians
from zoo import build_zoo, tflite_interpreter, zoo_names

NAMES = zoo_names()
FLOAT = [n for n in NAMES if not n.startswith("int8:")]
INT8 = [n for n in NAMES if n.startswith("int8:")]
#: Recurrent models with a streaming form (.keras/.h5; TFLite and ONNX exports of unrolled
#: layers compile to the window form only).
RECURRENT = [n for n in FLOAT if any(k in n for k in ("rnn", "gru", "lstm"))
             and n.split(":")[0] in ("keras", "h5")]
UNROLLED_EXPORTS = [n for n in FLOAT if n.split(":")[0] in ("onnx", "tflite") and "unrolled" in n]
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-O2",
             "-std=c99", "-Wall", "-Wextra", "-Wdouble-promotion", "-Werror"]


def c_name(zoo_name: str) -> str:
    return "z_" + zoo_name.replace(":", "_")


#: Host flags of the zoo's builds: the suite's warnings, -O1 to keep 47 builds quick.
ZOO_CFLAGS = [f if f != "-O2" else "-O1" for f in HOST_CFLAGS]


def build_host(d: Path, name: str, n_in: int, n_out: int) -> HostModel:
    """support.build_host in one compiler run, reusing one build of the shared runtime."""
    nn_obj = d.parent.parent / "nnmpc_nn.o"
    if not nn_obj.exists():
        subprocess.run(["cc", *ZOO_CFLAGS, "-c", str(d / "nnmpc_nn.c"), "-o", str(nn_obj)],
                       check=True, capture_output=True)
    src = d.parent / f"harness_{name}.c"
    src.write_text(HARNESS.format(name=name, NAME=name.upper()))
    exe = d.parent / f"harness_{name}"
    subprocess.run(["cc", *ZOO_CFLAGS, f"-I{d}", str(src), str(d / f"{name}.c"), str(nn_obj),
                    "-o", str(exe)], check=True, capture_output=True)
    return HostModel(exe, n_in, n_out)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Every zoo model built once and compiled once: {name: (ZooModel, out_dir)}."""
    root = tmp_path_factory.mktemp("zoo")
    models = build_zoo(root / "models")
    assert [m.name for m in models] == NAMES
    out = {}
    for m in models:
        d = root / "c" / c_name(m.name)
        compile_model(m.path, d, name=c_name(m.name))
        out[m.name] = (m, d)
    return out


def gradient_tape(model, x: np.ndarray) -> np.ndarray:
    shape = tuple(model.inputs[0].shape[1:])
    (J,) = tape_jacobians(lambda xt: model(xt[0]), [x.reshape((len(x),) + shape)])
    return J


def test_zoo_covers_every_op_activation_and_format(zoo):
    assert len(zoo) >= 30
    formats = {m.fmt for m, _ in zoo.values()}
    assert formats == {"keras", "h5", "onnx", "tflite", "tflite_int8"}
    ops, acts = set(), set()
    for m, _ in zoo.values():
        g = load_model(m.path)
        for n in g.nodes:
            ops.add(n.op)
            if "activation" in n.attrs:
                acts.add(n.attrs["activation"])
            if n.op == "pool":
                ops.add(f"pool_{n.attrs['kind']}_{n.attrs.get('rank', 2)}d")
            if n.op == "conv":
                ops.add(f"conv_{n.attrs.get('rank', 2)}d" + ("_depthwise" if n.attrs["groups"] > 1 else ""))
    assert set(ACTIVATIONS) <= acts, set(ACTIVATIONS) - acts
    assert set(OPS) <= ops, set(OPS) - ops
    for extra in ("pool_max_1d", "pool_max_2d", "pool_avg_1d", "pool_avg_2d", "conv_1d",
                  "conv_2d", "conv_2d_depthwise", "conv_1d_depthwise"):
        assert extra in ops, extra


@pytest.mark.parametrize("name", FLOAT)
def test_float_model_matches_reference_and_gradient_tape(zoo, name):
    m, d = zoo[name]
    host = build_host(d, c_name(name), m.in_size, m.out_size)
    x = np.random.default_rng(7).uniform(-m.x_range, m.x_range, (64, m.in_size)).astype(np.float32)
    y_c, J_c = host.run(x)
    y_ref = m.reference(x)
    assert rel_err(y_c, y_ref) <= 1e-5, name
    if m.keras_model is not None:
        J_ref = gradient_tape(m.keras_model, x[:16])
        assert rel_err(J_c[:16], J_ref) <= 1e-4, name
    else:  # central differences in float64 of the reference itself
        h = 1e-3
        x0 = x[0].astype(np.float64)
        pts = np.array([x0 + h * e for e in np.eye(m.in_size)] + [x0 - h * e for e in np.eye(m.in_size)])
        y = m.reference(pts.astype(np.float32)).astype(np.float64)
        J_fd = ((y[:m.in_size] - y[m.in_size:]) / (2 * h)).T
        assert np.abs(J_c[0] - J_fd).max() <= 5e-3 * (1 + np.abs(J_fd).max()), name


INT8_HARNESS = r"""
#include <stdio.h>
#include <stdint.h>
#include "{name}.h"
int main(void)
{{
    static int8_t x[{NAME}_INPUT_SIZE], y[{NAME}_OUTPUT_SIZE];
    static float xf[{NAME}_INPUT_SIZE], yf[{NAME}_OUTPUT_SIZE];
    int i;
    while (fread(x, 1, {NAME}_INPUT_SIZE, stdin) == {NAME}_INPUT_SIZE) {{
        {name}_predict_int8(x, y);
        for (i = 0; i < {NAME}_INPUT_SIZE; ++i)
            xf[i] = {NAME}_INPUT_SCALE * (float)(x[i] - {NAME}_INPUT_ZERO_POINT);
        {name}_predict(xf, yf);
        fwrite(y, 1, {NAME}_OUTPUT_SIZE, stdout);
        fwrite(yf, sizeof(float), {NAME}_OUTPUT_SIZE, stdout);
    }}
    return 0;
}}
"""


@pytest.mark.parametrize("name", INT8)
def test_int8_model_is_bit_exact_with_tflite_reference_interpreter(zoo, name, tmp_path):
    m, d = zoo[name]
    cn = c_name(name)
    src = tmp_path / "h.c"
    src.write_text(INT8_HARNESS.format(name=cn, NAME=cn.upper()))
    exe = tmp_path / "h"
    subprocess.run(["cc", *ZOO_CFLAGS, f"-I{d}", str(src), *map(str, sorted(d.glob("*.c"))),
                    "-o", str(exe)], check=True, capture_output=True)
    it = tflite_interpreter(m.path, reference=True)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    assert i["dtype"] == np.int8 and o["dtype"] == np.int8
    xs = np.random.default_rng(11).integers(-128, 128, (400, m.in_size)).astype(np.int8)
    ref = []
    for row in xs:
        it.set_tensor(i["index"], row.reshape(i["shape"]))
        it.invoke()
        ref.append(it.get_tensor(o["index"]).reshape(-1).copy())
    ref = np.array(ref)
    raw = subprocess.run([str(exe)], input=xs.tobytes(), capture_output=True, check=True).stdout
    per = m.out_size * 5
    rows = np.frombuffer(raw, np.uint8).reshape(len(xs), per)
    got = rows[:, :m.out_size].copy().view(np.int8)
    got_f = rows[:, m.out_size:].copy().view(np.float32)
    assert np.array_equal(got, ref), f"{np.sum(got != ref)} of {ref.size} outputs differ"
    # NAME_predict: the same model on dequantised floats, quantised back at the edge
    s, z = o["quantization"]
    assert np.array_equal(got_f, (s * (ref.astype(np.float32) - z)).astype(np.float32))


@pytest.mark.parametrize("name", [n for n in INT8 if n in ("int8:mlp_relu", "int8:mlp_tanh_sigmoid",
                                                           "int8:unrolled_simple_rnn")])
def test_int8_dsp_kernels_are_bit_exact_on_cortex_m4(zoo, name, tmp_path):
    """The int8 dense kernels' Cortex-M4 path (SXTB16/SMLAD, -O2) run in the emulator: equal to
    the TFLite reference interpreter, as the portable C path is on the host."""
    if not have("arm-none-eabi-gcc"):
        pytest.skip("arm-none-eabi-gcc is not installed")
    from nnmpc.host.bench.netbench import BENCH_DIR, _link
    from nnmpc.host.build.boards import load_board
    from nnmpc.host.bench.cortexm import RAM_BASE, CortexM4Counter
    from nnmpc.host.build.firmware import cflags
    m, d = zoo[name]
    cn = c_name(name)
    assert "nnmpc_q_dense_z(" in (d / f"{cn}.c").read_text()
    elf = _link("arm-none-eabi-gcc", cflags(load_board("qemu-m4f"), "-O2"),
                [BENCH_DIR / "bench_main.c", *sorted(d.glob("*.c"))], [d],
                {"BENCH_PREFIX": cn, "BENCH_IN": str(m.in_size), "BENCH_OUT": str(m.out_size),
                 "BENCH_JACOBIAN": "0"}, tmp_path / "q.elf")
    c = CortexM4Counter(elf)
    assert "smlad" in subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], check=True,
                                     capture_output=True, text=True).stdout
    it = tflite_interpreter(m.path, reference=True)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    xs = np.random.default_rng(12).integers(-128, 128, (60, m.in_size)).astype(np.int8)
    x_at, y_at = RAM_BASE + 0x10000, RAM_BASE + 0x10000 + ((m.in_size + 15) & ~15)
    for row in xs:
        it.set_tensor(i["index"], row.reshape(i["shape"]))
        it.invoke()
        ref = it.get_tensor(o["index"]).reshape(-1)
        c.write(x_at, row.tobytes())
        c.call(f"{cn}_predict_int8", (x_at, y_at))
        got = np.frombuffer(c.read(y_at, m.out_size), np.int8)
        assert np.array_equal(got, ref), (row, got, ref)


STREAM_HARNESS = r"""
#include <stdio.h>
#include <string.h>
#include "{name}.h"
int main(void)
{{
    static float x[{NAME}_INPUT_SIZE], y[{NAME}_OUTPUT_SIZE], s[{NAME}_STEP_OUTPUT_SIZE];
    int t;
    while (fread(x, sizeof(float), {NAME}_INPUT_SIZE, stdin) == {NAME}_INPUT_SIZE) {{
        {name}_predict(x, y);
        {name}_reset();
        for (t = 0; t < {NAME}_WINDOW; ++t)
            {name}_step(x + t * {NAME}_STEP_INPUT_SIZE, s);
        fwrite(y, sizeof(float), {NAME}_OUTPUT_SIZE, stdout);
        fwrite(s, sizeof(float), {NAME}_STEP_OUTPUT_SIZE, stdout);
    }}
    return 0;
}}
"""


@pytest.mark.parametrize("name", RECURRENT)
def test_streaming_steps_reproduce_the_window(zoo, name, tmp_path):
    """NAME_reset then NAME_step over the window's rows gives the window's last output."""
    m, d = zoo[name]
    cn = c_name(name)
    h = (d / f"{cn}.h").read_text()
    assert f"void {cn}_step(const float *input, float *output);" in h
    assert f"#define {cn.upper()}_WINDOW {m.in_shape[0]}" in h
    src = tmp_path / "s.c"
    src.write_text(STREAM_HARNESS.format(name=cn, NAME=cn.upper()))
    exe = tmp_path / "s"
    subprocess.run(["cc", *ZOO_CFLAGS, f"-I{d}", str(src), *map(str, sorted(d.glob("*.c"))),
                    "-o", str(exe)], check=True, capture_output=True)
    x = np.random.default_rng(3).uniform(-2, 2, (20, m.in_size)).astype(np.float32)
    raw = subprocess.run([str(exe)], input=x.tobytes(), capture_output=True, check=True).stdout
    r = np.frombuffer(raw, np.float32).reshape(len(x), -1)
    y, s = r[:, :m.out_size], r[:, m.out_size:]
    last = y.reshape(len(x), -1, s.shape[1])[:, -1] if s.shape[1] != m.out_size else y
    assert rel_err(s, last) <= 1e-5
    assert rel_err(y, m.reference(x)) <= 1e-5


@pytest.mark.parametrize("name", UNROLLED_EXPORTS)
def test_unrolled_recurrent_exports_compile_to_the_window_form(zoo, name):
    """TFLite/ONNX exports of unrolled recurrent layers: one window in NAME_predict (with its
    exact Jacobian, checked against GradientTape above), every time step read from the input
    once, and no streaming form (the converters leave no trace of the cell to stream)."""
    m, d = zoo[name]
    cn = c_name(name)
    h = (d / f"{cn}.h").read_text()
    assert f"void {cn}_predict_jacobian(const float *input, float *output, float *jacobian);" in h
    assert f"{cn}_step(" not in h
    assert f"#define {cn.upper()}_INPUT_SIZE {m.in_size}" in h
    g = load_model(m.path)
    steps = [n for n in g.nodes if n.op == "slice" and n.inputs[0] in g.inputs]
    steps += [n for n in g.nodes if n.op == "slice" and g.producer(n.inputs[0]) is not None
              and g.producer(n.inputs[0]).inputs[0] in g.inputs]
    assert len(steps) == m.in_shape[0], [n.source for n in steps]


def test_whole_zoo_cross_compiles_for_cortex_m4f(zoo, tmp_path):
    """Every generated NAME.c (and the runtime once: it is the same file in every folder) with
    arm-none-eabi-gcc and -Werror, in two jobs, one per core."""
    if not have("arm-none-eabi-gcc"):
        pytest.skip("arm-none-eabi-gcc is not installed")
    dirs = [d for _, d in zoo.values()]
    srcs = [str(d / f"{d.name}.c") for d in dirs] + [str(dirs[0] / "nnmpc_nn.c")]
    jobs = [srcs[0::2], srcs[1::2]]
    for k in range(2):
        (tmp_path / str(k)).mkdir()

    def build(k: int) -> subprocess.CompletedProcess:
        return subprocess.run(["arm-none-eabi-gcc", *ARM_FLAGS, "-c", *jobs[k]], cwd=tmp_path / str(k),
                              capture_output=True, text=True)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(build, range(2)))
    assert all(r.returncode == 0 for r in results), "\n".join(r.stderr[:3000] for r in results)
    objs = sorted(p.name for p in tmp_path.glob("*/*.o"))
    assert objs == sorted(Path(s).stem + ".o" for s in srcs)


def test_output_is_byte_identical_for_every_format(zoo, tmp_path):
    for name in ("onnx:conv1d_pool", "tflite:functional_add_concat_mul", "int8:conv2d",
                 "keras:lstm"):
        m, d = zoo[name]
        files = compile_model(m.path, tmp_path / c_name(name), name=c_name(name))
        for f in files[:2]:  # NAME.h, NAME.c (the runtime files are copies)
            assert f.read_bytes() == (d / f.name).read_bytes(), (name, f.name)
        h = (d / f"{c_name(name)}.h").read_text()
        assert "generated by nnmpc" in h and "Model hash:" in h
        assert not any(w in h for w in ("2024", "2025", "2026", "UTC"))


def test_two_formats_of_one_model_link_into_one_program(zoo, tmp_path):
    names = ["keras:conv1d_pool", "onnx:conv1d_pool", "tflite:conv1d_pool", "int8:conv1d"]
    main = tmp_path / "main.c"
    inc = "".join(f'#include "{c_name(n)}.h"\n' for n in names)
    calls = "".join(f"{{ static float x[{c_name(n).upper()}_INPUT_SIZE], y[{c_name(n).upper()}_OUTPUT_SIZE];"
                    f" {c_name(n)}_predict(x, y); }}\n" for n in names)
    main.write_text(f"{inc}int main(void)\n{{\n{calls}return 0;\n}}\n")
    srcs, incs = [], []
    for n in names:
        d = zoo[n][1]
        srcs.append(str(d / f"{c_name(n)}.c"))
        incs.append(f"-I{d}")
    srcs.append(str(zoo[names[0]][1] / "nnmpc_nn.c"))
    subprocess.run(["cc", *HOST_CFLAGS, *incs, str(main), *srcs, "-o", str(tmp_path / "all")],
                   check=True, capture_output=True)
    subprocess.run([str(tmp_path / "all")], check=True)


def test_report_has_a_row_per_layer_and_the_arena(zoo):
    from nnmpc.compiler.backend.report import format_report, layer_costs

    m, d = zoo["keras:conv2d_valid_same"]
    g = optimise(load_model(m.path))
    rows = layer_costs(g)
    assert len(rows) == len(g.nodes)
    conv = [r for r in rows if r.op == "conv"]
    # first conv: 6x6 outputs x 4 channels, 3x3x2 kernel
    assert conv[0].macs == 6 * 6 * 4 * 3 * 3 * 2
    assert conv[0].params == 4 * 3 * 3 * 2 + 4 and conv[0].flash_bytes == 4 * conv[0].params
    text = format_report(g)
    h = (d / f"{c_name(m.name)}.h").read_text()
    arena = int(h.split("_ARENA_BYTES ")[1].split()[0])
    assert f"{arena}" in text


@pytest.mark.qemu
@pytest.mark.parametrize("name", ["keras:conv1d_bn_gap", "onnx:functional_add_concat_mul",
                                  "h5:gru_reset_after", "tflite:mlp_gelu_softmax_exponential"])
def test_zoo_sample_runs_in_qemu(zoo, name, tmp_path):
    from nnmpc.host.build.boards import load_board
    from nnmpc.host.link.client import DeviceClient
    from nnmpc.host.build.firmware import build_firmware
    from nnmpc.host.link.qemu import QemuBoard

    if not (have("arm-none-eabi-gcc") and have("qemu-system-arm")):
        pytest.skip("the Arm toolchain or QEMU is not installed")
    m, _ = zoo[name]
    compile_model(m.path, tmp_path / "model", name="model")
    board = load_board("qemu-m4f")
    img = build_firmware(board, tmp_path / "model", tmp_path / "fw")
    x = np.random.default_rng(9).uniform(-2, 2, (40, m.in_size)).astype(np.float32)
    q = QemuBoard(img.elf, board)
    with q as port:
        c = DeviceClient(port)
        y_dev = np.array([c.predict(xi) for xi in x])
        y_j, J = c.predict_jacobian(x[0])
        c.exit()
        assert q.wait_exit() == 0
    assert rel_err(y_dev, m.reference(x)) <= 1e-5
    assert np.array_equal(y_j, y_dev[0])
    J_ref = gradient_tape(m.keras_model, x[:1])[0]
    assert rel_err(J, J_ref) <= 1e-4


@pytest.mark.parametrize("name", ["keras:functional_add_concat_mul", "onnx:conv1d_pool",
                                  "keras:gru_reset_before", "onnx:handmade",
                                  "keras:conv2d_dilation_depthwise", "tflite:unrolled_gru",
                                  "onnx:unrolled_lstm"])
def test_forward_and_reverse_mode_jacobians_agree(zoo, name, tmp_path):
    """Both differentiation modes, forced, give the same Jacobian (and the same outputs)."""
    m, d = zoo[name]
    x = np.random.default_rng(5).uniform(-1.5, 1.5, (8, m.in_size)).astype(np.float32)
    runs = {}
    for mode in ("forward", "reverse"):
        cn = f"{c_name(name)}_{mode}"
        compile_model(m.path, tmp_path / "c" / mode, name=cn, jacobian=mode)
        assert f"{mode}-mode differentiation" in (tmp_path / "c" / mode / f"{cn}.h").read_text()
        runs[mode] = build_host(tmp_path / "c" / mode, cn, m.in_size, m.out_size).run(x)
    (y_f, J_f), (y_r, J_r) = runs["forward"], runs["reverse"]
    assert np.array_equal(y_f, y_r)
    assert rel_err(J_r, J_f) <= 1e-5
