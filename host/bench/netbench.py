"""``nnmpc bench``: flash, RAM, instructions and estimated cycles of compiled models on a
Cortex-M4F, beside a naive C-loop implementation of the same nets measured in the same run.

For every benchmark net:

1. a Keras model with random weights (fixed seed) is saved and compiled with the nnmpc
   compiler (``compile_model``, the code path of ``nnmpc compile``);
2. a naive baseline is written: plain C loops over the same float32 weights, ``tanhf``/``expf``
   from newlib's libm, the Jacobian by the same forward-mode loops;
3. each is linked with arm-none-eabi-gcc (board flags of ``qemu-m4f``, ``-O2``,
   ``-ffunction-sections -fdata-sections -Wl,--gc-sections``, newlib-nano) into three images:
   predict only, predict + Jacobian, and the same harness with empty functions. Flash and RAM of
   the model are the differences from the empty image;
4. ``predict`` and ``jacobian`` run in an instruction-level Cortex-M4 emulator
   (:mod:`.cortexm`) on random inputs; instructions are counted and cycles estimated with
   :data:`.cortexm.COST_TABLE`. Outputs are checked against TensorFlow.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..build.boards import load_board
from ..build.elfsize import image_size
from ..build.firmware import FIRMWARE_DIR, cflags
from ..errors import NnmpcError
from ..toolchain import require
from .cortexm import COST_TABLE, RAM_BASE, CortexM4Counter

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / "bench"
BUF_ADDR = RAM_BASE + 0x00080000       # input/output buffers: above .bss, below the stack


@dataclass(frozen=True)
class NetSpec:
    key: str
    n_in: int
    layers: tuple[tuple[int, str], ...]
    seed: int = 0
    int8: bool = False    # also bench the TFLite int8 export (when the int8 runtime exists)

    @property
    def n_out(self) -> int:
        return self.layers[-1][0]

    @property
    def params(self) -> int:
        n, p = self.n_in, 0
        for units, _ in self.layers:
            p += n * units + units
            n = units
        return p

    def describe(self) -> str:
        parts = [str(self.n_in)] + [f"{u} {a}" if a != "linear" else str(u) for u, a in self.layers]
        return " -> ".join(parts)


NETS = {
    "A": NetSpec("A", 3, ((32, "tanh"), (32, "tanh"), (3, "linear")), seed=1),
    "B": NetSpec("B", 6, ((64, "relu"), (64, "relu"), (64, "relu"), (4, "linear")), seed=2,
                 int8=True),
}

#: Targets from the issue (estimated Cortex-M4 cycles per predict; flash <= 4 B/param + 2 KB).
TARGETS = {"A": 10_000, "B": 32_000}
TARGET_INT8 = {"B": 30_000}


# ---- models ---------------------------------------------------------------------------------

def make_keras(spec: NetSpec, path: Path):
    """A Keras MLP with Glorot weights from ``spec.seed`` plus N(0, 0.1) noise (biases too)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras

    keras.utils.set_random_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    model = keras.Sequential([keras.Input((spec.n_in,))] + [
        keras.layers.Dense(u, activation=a, name=f"dense_{i}") for i, (u, a) in enumerate(spec.layers)])
    model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model.save(path)
    return model


def _c_floats(a: np.ndarray) -> str:
    from nnmpc.compiler.backend.codegen import c_array
    return c_array(a)


def naive_c(spec: NetSpec, weights: list[np.ndarray], prefix: str = "naive") -> str:
    """Plain C loops for ``spec``: the baseline every figure is compared with."""
    out = ["/* Naive C loops: the benchmark baseline (same weights, same compiler flags). */",
           "#include <math.h>", ""]
    dims = [spec.n_in] + [u for u, _ in spec.layers]
    nmax = max(dims)
    for i in range(len(spec.layers)):
        W, b = weights[2 * i].T, weights[2 * i + 1]       # Keras kernel is [n_in, n_out]
        out.append(f"static const float W{i}[{W.size}] = {{\n{_c_floats(W)}\n}};")
        out.append(f"static const float b{i}[{b.size}] = {{\n{_c_floats(b)}\n}};")
    act_c = {"linear": "{v}", "relu": "({v} > 0.0f ? {v} : 0.0f)", "tanh": "tanhf({v})",
             "sigmoid": "(1.0f / (1.0f + expf(-{v})))"}
    der_c = {"linear": "1.0f", "relu": "({y} > 0.0f ? 1.0f : 0.0f)", "tanh": "(1.0f - {y} * {y})",
             "sigmoid": "({y} * (1.0f - {y}))"}
    k = spec.n_in
    out.append(f"static float bufA[{nmax}], bufB[{nmax}], tanA[{nmax * k}], tanB[{nmax * k}];")
    out.append(f"void {prefix}_predict(const float *input, float *output);")
    out.append(f"void {prefix}_jacobian(const float *input, float *jacobian);")

    def layer_loops(jac: bool) -> list[str]:
        body = []
        src, n = "input", spec.n_in
        tsrc = None
        for i, (units, act) in enumerate(spec.layers):
            last = i == len(spec.layers) - 1
            dst = "output" if (last and not jac) else ("bufA" if i % 2 == 0 else "bufB")
            tdst = "jacobian" if last else ("tanA" if i % 2 == 0 else "tanB")
            body += [f"    for (i = 0; i < {units}; ++i) {{",
                     f"        float acc = b{i}[i];",
                     f"        for (j = 0; j < {n}; ++j) acc += W{i}[i * {n} + j] * {src}[j];",
                     f"        {dst}[i] = {act_c[act].format(v='acc')};",
                     "    }"]
            if jac:
                d = der_c[act].format(y=f"{dst}[i]")
                body += [f"    for (i = 0; i < {units}; ++i) {{",
                         f"        const float d = {d};",
                         f"        for (c = 0; c < {k}; ++c) {{",
                         "            float t = 0.0f;"]
                if tsrc is None:
                    body.append(f"            t = W{i}[i * {n} + c];")
                else:
                    body.append(f"            for (j = 0; j < {n}; ++j) t += W{i}[i * {n} + j] * {tsrc}[j * {k} + c];")
                body += [f"            {tdst}[i * {k} + c] = d * t;", "        }", "    }"]
            src, n, tsrc = dst, units, tdst
        return body

    out += [f"void {prefix}_predict(const float *input, float *output)", "{", "    int i, j;"]
    out += layer_loops(False) + ["}", ""]
    out += [f"void {prefix}_jacobian(const float *input, float *jacobian)", "{", "    int i, j, c;"]
    out += layer_loops(True) + ["}", ""]
    return "\n".join(out)


# ---- images ---------------------------------------------------------------------------------

def _link(gcc: str, flags: list[str], sources: list[Path], includes: list[Path],
          defines: dict[str, str], elf: Path) -> Path:
    cmd = [gcc, *flags, *(f"-I{p}" for p in includes), *(f"-D{k}={v}" for k, v in defines.items()),
           *(str(s) for s in sources), "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           "-Wl,--gc-sections", "-T", str(BENCH_DIR / "bench.ld"), "-o", str(elf), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NnmpcError(f"bench image {elf.name} failed to build:\n{proc.stderr.strip()}")
    return elf


@dataclass
class Images:
    predict: Path          # calls predict only
    full: Path             # calls predict and jacobian
    empty: Path            # as full, with empty functions
    empty_predict: Path    # as predict, with an empty function


def build_images(name: str, prefix: str, model_sources: list[Path], includes: list[Path],
                 n_in: int, n_out: int, out_dir: Path, flags: list[str], *,
                 jacobian: bool = True) -> Images:
    """The bench images of one model; without ``jacobian`` (a model that has none), ``full``
    and ``empty`` are the predict-only images."""
    gcc = require("arm-none-eabi-gcc")
    out_dir.mkdir(parents=True, exist_ok=True)
    main = BENCH_DIR / "bench_main.c"
    d = {"BENCH_PREFIX": prefix, "BENCH_IN": str(n_in), "BENCH_OUT": str(n_out)}
    predict = _link(gcc, flags, [main, *model_sources], includes, {**d, "BENCH_JACOBIAN": "0"},
                    out_dir / f"{name}_predict.elf")
    empty_predict = _link(gcc, flags, [main, BENCH_DIR / "bench_empty.c"], [],
                          {**d, "BENCH_JACOBIAN": "0"}, out_dir / f"{name}_empty_predict.elf")
    if not jacobian:
        return Images(predict, predict, empty_predict, empty_predict)
    return Images(
        predict=predict,
        full=_link(gcc, flags, [main, *model_sources], includes, {**d, "BENCH_JACOBIAN": "1"},
                   out_dir / f"{name}_full.elf"),
        empty=_link(gcc, flags, [main, BENCH_DIR / "bench_empty.c"], [], {**d, "BENCH_JACOBIAN": "1"},
                    out_dir / f"{name}_empty.elf"),
        empty_predict=empty_predict,
    )


def size_delta(img: Path, empty: Path) -> dict[str, int]:
    a, e = image_size(img), image_size(empty)
    return {"flash": a.flash - e.flash, "ram_static": (a.data + a.bss) - (e.data + e.bss)}


# ---- running --------------------------------------------------------------------------------

def run_calls(elf: Path, prefix: str, xs: np.ndarray, n_out: int, *,
              jacobian: bool = True) -> dict:
    """Call predict (and jacobian) for each input row of ``xs``; counts and outputs."""
    cnt = CortexM4Counter(elf)
    n_in = xs.shape[1]
    x_addr, y_addr = BUF_ADDR, BUF_ADDR + 0x1000
    fns = ("predict", "jacobian") if jacobian else ("predict",)
    stats: dict[str, list] = {fn: [] for fn in fns}
    ys, js = [], []
    for x in xs:
        for fn in fns:
            cnt.reload()
            cnt.write(x_addr, np.asarray(x, np.float32).tobytes())
            r = cnt.call(f"{prefix}_{fn}", (x_addr, y_addr))
            stats[fn].append(r)
            size = n_out if fn == "predict" else n_out * n_in
            v = np.frombuffer(cnt.read(y_addr, 4 * size), np.float32)
            (ys if fn == "predict" else js).append(v)
    summary = {}
    for fn, rs in stats.items():
        summary[fn] = {
            "instructions": round(float(np.mean([r.instructions for r in rs])), 1),
            "cycles_est": round(float(np.mean([r.cycles for r in rs])), 1),
            "cycles_est_max": int(max(r.cycles for r in rs)),
            "instructions_max": int(max(r.instructions for r in rs)),
            "stack_bytes": int(max(r.stack_bytes for r in rs)),
        }
    J = np.array(js).reshape(len(xs), n_out, n_in) if jacobian else None
    return {"summary": summary, "y": np.array(ys), "J": J}


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a - b) / (1.0 + np.abs(b))).max())


def tf_reference(model, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf
    xt = tf.constant(xs)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = model(xt)
    return y.numpy(), tape.batch_jacobian(y, xt).numpy()


def bench_net(spec: NetSpec, work: Path, flags: list[str], xs: np.ndarray, progress=print) -> dict:
    from nnmpc.compiler import compile_model

    work.mkdir(parents=True, exist_ok=True)
    progress(f"[{spec.key}] Keras model {spec.describe()} (seed {spec.seed}), compile")
    model = make_keras(spec, work / f"{spec.key}.keras")
    weights = model.get_weights()
    gen = work / "nnmpc"
    compile_model(work / f"{spec.key}.keras", gen, name="net")
    # The compiler picks the Jacobian mode by an estimated cost; when it picks reverse mode the
    # forward-mode Jacobian (the tangent kernels) is measured too.
    fwd = work / "nnmpc-fwd"
    auto_mode = ("reverse" if "reverse mode: " in (gen / "net.c").read_text() else "forward")
    if auto_mode != "forward":
        compile_model(work / f"{spec.key}.keras", fwd, name="net", jacobian="forward")
    naive_src = work / "naive.c"
    naive_src.write_text(naive_c(spec, weights))

    y_tf, J_tf = tf_reference(model, xs)
    result = {"net": spec.describe(), "params": spec.params, "seed": spec.seed,
              "flash_budget": 4 * spec.params + 2048, "impl": {}}
    impls = {
        "nnmpc": ("net", sorted(gen.glob("*.c")), [gen]),
        "naive": ("naive", [naive_src], []),
    }
    if auto_mode != "forward":
        impls["nnmpc-fwd"] = ("net", sorted(fwd.glob("*.c")), [fwd])
    result["jacobian_mode"] = auto_mode
    for impl, (prefix, sources, includes) in impls.items():
        progress(f"[{spec.key}] {impl}: build, count")
        imgs = build_images(impl, prefix, sources, includes, spec.n_in, spec.n_out,
                            work / "elf", flags)
        run = run_calls(imgs.full, prefix, xs, spec.n_out)
        entry = run["summary"]
        entry["flash_predict"] = size_delta(imgs.predict, imgs.empty_predict)["flash"]
        full = size_delta(imgs.full, imgs.empty)
        entry["flash_predict_jacobian"] = full["flash"]
        entry["ram_static"] = full["ram_static"]
        entry["max_rel_err_y_vs_tf"] = _rel_err(run["y"], y_tf)
        entry["max_rel_err_J_vs_tf"] = _rel_err(run["J"], J_tf)
        result["impl"][impl] = entry
    if spec.int8 and (FIRMWARE_DIR / "runtime" / "nnmpc_q8.h").is_file():
        progress(f"[{spec.key}] nnmpc-int8: TFLite int8 export, compile, build, count")
        result["impl"]["nnmpc-int8"] = bench_int8(spec, model, work, flags, xs, y_tf)
    a, b = result["impl"]["nnmpc"], result["impl"]["naive"]
    result["ratio_to_naive"] = {
        "predict_cycles_est": round(a["predict"]["cycles_est"] / b["predict"]["cycles_est"], 3),
        "predict_instructions": round(a["predict"]["instructions"] / b["predict"]["instructions"], 3),
        "jacobian_cycles_est": round(a["jacobian"]["cycles_est"] / b["jacobian"]["cycles_est"], 3),
        "flash_predict": round(a["flash_predict"] / b["flash_predict"], 3),
    }
    if "nnmpc-int8" in result["impl"]:
        q = result["impl"]["nnmpc-int8"]
        result["ratio_to_naive"]["int8_predict_cycles_est"] = round(
            q["predict"]["cycles_est"] / b["predict"]["cycles_est"], 3)
        result["ratio_to_naive"]["int8_flash_predict"] = round(q["flash_predict"] / b["flash_predict"], 3)
    result["jacobian_over_predict"] = round(a["jacobian"]["cycles_est"] / a["predict"]["cycles_est"], 3)
    return result


def bench_int8(spec: NetSpec, model, work: Path, flags: list[str], xs: np.ndarray,
               y_tf: np.ndarray) -> dict:
    """The int8 build of ``model``: TFLite full-integer export (float input and output, a
    representative dataset of 256 inputs uniform in [-3, 3], numpy seed 1000 + spec.seed),
    compiled by nnmpc. Errors are against the TFLite interpreter and against float Keras."""
    import tensorflow as tf
    from nnmpc.compiler import compile_model

    rng = np.random.default_rng(1000 + spec.seed)
    rep = rng.uniform(-3, 3, (256, spec.n_in)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([r[None]] for r in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.float32
    conv.inference_output_type = tf.float32
    path = work / f"{spec.key}_int8.tflite"
    path.write_bytes(conv.convert())
    gen = work / "nnmpc-int8"
    compile_model(path, gen, name="net")
    imgs = build_images("nnmpc-int8", "net", sorted(gen.glob("*.c")), [gen], spec.n_in, spec.n_out,
                        work / "elf", flags, jacobian=False)
    run = run_calls(imgs.predict, "net", xs, spec.n_out, jacobian=False)
    interp = tf.lite.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    i_in, i_out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    y_lite = []
    for x in xs:
        interp.set_tensor(i_in, x[None])
        interp.invoke()
        y_lite.append(interp.get_tensor(i_out)[0])
    entry = run["summary"]
    entry["flash_predict"] = size_delta(imgs.predict, imgs.empty_predict)["flash"]
    entry["ram_static"] = size_delta(imgs.predict, imgs.empty_predict)["ram_static"]
    entry["max_abs_err_y_vs_tflite"] = float(np.abs(run["y"] - np.array(y_lite)).max())
    entry["max_rel_err_y_vs_tf"] = _rel_err(run["y"], y_tf)
    return entry


def toolchain_version() -> str:
    gcc = require("arm-none-eabi-gcc")
    return subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def run_bench(out_dir: Path, keys: list[str], *, inputs: int = 16, seed: int = 0,
              command: str = "nnmpc bench", progress=print) -> dict:
    board = load_board("qemu-m4f")
    flags = cflags(board, "-O2")
    rng = np.random.default_rng(seed)
    res = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "target": "Cortex-M4F (" + " ".join(board.build["cflags"]) + ")",
        "compiler": toolchain_version(),
        "cflags": flags + ["--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections", "-lm"],
        "counter": "unicorn (Cortex-M4 model) + capstone, block hook",
        "cost_table": COST_TABLE,
        "inputs": f"{inputs} inputs per net, uniform in [-3, 3], numpy seed {seed}; figures are "
                  "means over them (max also given)",
        "weights": "Keras Glorot-uniform init with keras.utils.set_random_seed(seed) plus "
                   "N(0, 0.1) noise from numpy seed `seed` on every weight and bias",
        "host": platform.platform(),
        "nets": {},
    }
    for key in keys:
        spec = NETS[key]
        xs = rng.uniform(-3, 3, size=(inputs, spec.n_in)).astype(np.float32)
        res["nets"][key] = bench_net(spec, out_dir / key, flags, xs, progress)
    return res
