"""The streaming form (NAME_step / NAME_reset) of the native ONNX RNN, GRU and LSTM ops:
real PyTorch modules exported with torch.onnx.export (and onnx.helper graphs for what PyTorch
does not write: LSTM peepholes, layout 1), compiled for a fixed window and stepped in C over a
stream longer than the window, with a reset in the middle. Every step's outputs and the
recurrent state (NAME_state: h, then c, of each op in graph order) are compared with
onnxruntime run on the stream's prefixes (a copy of the model exported with a dynamic time
axis, whose Y_h / Y_c are made graph outputs); the window form against PyTorch and its
autograd Jacobian."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from support import rel_err

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn

from nnmpc.compiler import compile_model, load_model  # noqa: E402
from test_onnx_pytorch import LastStep, TimeFirst  # noqa: E402  (the same PyTorch models)


class Head(nn.Module):
    """A recurrent layer, a linear head on every step; the final state(s) as outputs too."""

    def __init__(self, cell: nn.Module, hidden: int, states: bool = True) -> None:
        super().__init__()
        self.cell, self.head, self.states = cell, nn.Linear(hidden, 2), states

    def forward(self, x):
        y, s = self.cell(x)
        if not self.states:
            return self.head(y)
        return (self.head(y), *(s if isinstance(s, tuple) else (s,)))


class ZeroState(nn.Module):
    """An initial state given as zeros in the model (a constant initial_h)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(2, 4, batch_first=True)

    def forward(self, x):
        y, h = self.gru(x, torch.zeros(1, 1, 4))
        return torch.relu(y), h


class WithState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(2, 4, batch_first=True)

    def forward(self, x, h0):
        return self.rnn(x, h0)[0]


class Mean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x):
        return self.gru(x)[0].mean(1)


def _models():
    torch.manual_seed(1)
    return {
        "gru": (Head(nn.GRU(3, 6, batch_first=True), 6), (1, 5, 3), 1),
        "lstm": (Head(nn.LSTM(3, 4, batch_first=True), 4), (1, 4, 3), 1),
        "rnn_relu": (Head(nn.RNN(2, 5, nonlinearity="relu", batch_first=True), 5), (1, 6, 2), 1),
        "rnn_tanh": (Head(nn.RNN(3, 4, batch_first=True), 4, states=False), (1, 3, 3), 1),
        "lstm2_last": (LastStep(), (1, 5, 3), 1),
        "gru_time_first": (TimeFirst(), (4, 1, 3), 0),
        "gru_zero_state": (ZeroState(), (1, 4, 2), 1),
    }


def _export(model, shape, path: Path, time_axis: int | None = None) -> None:
    model.eval()
    dyn = {"x": {time_axis: "seq"}} if time_axis is not None else None
    torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes=dyn)


def _with_states(path: Path, out: Path) -> list[str]:
    """The model with every recurrent op's Y_h (and Y_c) as extra graph outputs; their names."""
    m = onnx.load(str(path))
    names = []
    for n in m.graph.node:
        if n.op_type in ("RNN", "GRU", "LSTM"):
            names += [o for o in n.output[1:3] if o]
    known = {o.name for o in m.graph.output}
    for o in names:
        if o not in known:
            m.graph.output.append(onnx.helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT,
                                                                     None))
    onnx.save(m, str(out))
    return names


HARNESS = r"""
#include <stdio.h>
#include <string.h>
#include "%(name)s.c"
/* w: windows in, outputs and Jacobians out. s: (reset flag, one step) in; the step's outputs
 * and the state after it out. */
int main(int argc, char **argv)
{
    static float x[%(N)s_INPUT_SIZE], y[%(N)s_OUTPUT_SIZE],
        J[%(N)s_OUTPUT_SIZE * %(N)s_INPUT_SIZE], s[%(N)s_STEP_OUTPUT_SIZE], r;
    if (argc < 2) return 2;
    if (argv[1][0] == 'w') {
        while (fread(x, sizeof(float), %(N)s_INPUT_SIZE, stdin) == %(N)s_INPUT_SIZE) {
            %(name)s_predict_jacobian(x, y, J);
            fwrite(y, sizeof(float), %(N)s_OUTPUT_SIZE, stdout);
            fwrite(J, sizeof(float), %(N)s_OUTPUT_SIZE * %(N)s_INPUT_SIZE, stdout);
        }
        return 0;
    }
    while (fread(&r, sizeof(float), 1, stdin) == 1
           && fread(x, sizeof(float), %(N)s_STEP_INPUT_SIZE, stdin) == %(N)s_STEP_INPUT_SIZE) {
        if (r != 0.0f) %(name)s_reset();
        %(name)s_step(x, s);
        fwrite(s, sizeof(float), %(N)s_STEP_OUTPUT_SIZE, stdout);
        fwrite(%(name)s_state, sizeof(float), %(N)s_STATE_BYTES / 4, stdout);
    }
    return 0;
}
"""


class Compiled:
    def __init__(self, path: Path, work: Path, name: str) -> None:
        d = work / name
        compile_model(path, d, name=name)
        self.graph = load_model(path)
        self.h = (d / f"{name}.h").read_text()
        (d / "harness.c").write_text(HARNESS % {"name": name, "N": name.upper()})
        self.exe = d / "harness"
        subprocess.run(["cc", "-std=c99", "-O1", "-Wall", "-Werror", "-I", str(d),
                        str(d / "harness.c"), str(d / "nnmpc_nn.c"), "-o", str(self.exe)],
                       check=True, capture_output=True, text=True)
        g, sg = self.graph, self.graph.step_graph
        self.n_in, self.n_out = g.input_size, g.output_size
        self.s_in, self.s_out = sg.input_size, sg.output_size
        self.n_state = sum(sg.tensors[s].size for s, _ in sg.states)

    def window(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = subprocess.run([str(self.exe), "w"], input=np.float32(x).tobytes(),
                             capture_output=True, check=True).stdout
        r = np.frombuffer(out, np.float32).reshape(len(x), -1)
        return r[:, :self.n_out], r[:, self.n_out:].reshape(len(x), self.n_out, self.n_in)

    def stream(self, rows: np.ndarray, resets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rec = np.concatenate([np.float32(resets)[:, None], np.float32(rows)], axis=1)
        out = subprocess.run([str(self.exe), "s"], input=rec.tobytes(),
                             capture_output=True, check=True).stdout
        r = np.frombuffer(out, np.float32).reshape(len(rows), -1)
        return r[:, :self.s_out], r[:, self.s_out:]


def _ort_prefixes(path: Path, n_outputs: int, state_names: list[str], seq: np.ndarray,
                  shape_of, reference: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """onnxruntime (or the onnx package's reference evaluator) on every prefix of ``seq`` (rows of one step): each output's last step (or
    the output itself, if it has no time axis) concatenated, and the recurrent states."""
    if reference:  # onnxruntime refuses layout 1 ("batchwise recurrent operations")
        from onnx.reference import ReferenceEvaluator
        sess = ReferenceEvaluator(str(path))
        outs = list(sess.output_names)
    else:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outs = [o.name for o in sess.get_outputs()]
    runs = [sess.run(None, {"x": seq[:t + 1].reshape(shape_of(t + 1)).astype(np.float32)})
            for t in range(len(seq))]
    # an output's time axis: the one that grows from a prefix of one step to one of two
    time = [next((k for k, (p, q) in enumerate(zip(a.shape, b.shape)) if p != q), None)
            for a, b in zip(runs[0], runs[1])]
    ys, ss = [], []
    for r in runs:
        ys.append(np.concatenate([(np.take(o, [-1], axis=ax) if ax is not None else o).ravel()
                                  for o, ax in zip(r[:n_outputs], time)]))
        by = dict(zip(outs, r))
        ss.append(np.concatenate([by[s].ravel() for s in state_names]))
    return np.array(ys), np.array(ss)


def _check_stream(c: Compiled, ref_path: Path, n_outputs: int, states: list[str], T: int,
                  shape_of, seed: int, reference: bool = False) -> float:
    """Two streams of 2T + 1 steps (a reset before each) against onnxruntime's prefixes."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.5, 1.5, (2 * T + 1, c.s_in)).astype(np.float32)
    b = rng.uniform(-1.5, 1.5, (2 * T + 1, c.s_in)).astype(np.float32)
    resets = np.zeros(len(a) + len(b))
    resets[0] = resets[len(a)] = 1
    y, s = c.stream(np.concatenate([a, b]), resets)
    worst = 0.0
    for part, rows in ((slice(0, len(a)), a), (slice(len(a), None), b)):
        y_r, s_r = _ort_prefixes(ref_path, n_outputs, states, rows, shape_of, reference)
        assert y[part].shape == y_r.shape and s[part].shape == s_r.shape
        worst = max(worst, rel_err(y[part], y_r), rel_err(s[part], s_r))
    print(f"onnx streaming {c.exe.parent.name}: {2 * len(a)} steps, outputs and state vs "
          f"reference {worst:.1e}")
    assert worst <= 1e-5, worst
    return worst


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_stream")


def _torch_ref(model, shape, x: np.ndarray):
    def f(flat):
        out = model(flat.reshape(shape))
        return torch.cat([o.reshape(-1) for o in (out if isinstance(out, tuple) else (out,))])

    ys, Js = [], []
    for row in x:
        t = torch.tensor(row, dtype=torch.float32)
        with torch.no_grad():
            ys.append(f(t).numpy())
        Js.append(torch.autograd.functional.jacobian(f, t).numpy())
    return np.array(ys), np.array(Js)


@pytest.mark.parametrize("name", list(_models()) + ["gru_lbr0"])
def test_streaming_steps_match_onnxruntime_step_by_step(work, name):
    base = "gru" if name == "gru_lbr0" else name
    model, shape, taxis = _models()[base]
    fixed, dyn, ref = (work / f"{name}{s}.onnx" for s in ("", "_dyn", "_ref"))
    _export(model, shape, fixed)
    _export(model, shape, dyn, taxis)
    if name == "gru_lbr0":  # PyTorch always writes linear_before_reset=1
        for p in (fixed, dyn):
            m = onnx.load(str(p))
            for n in m.graph.node:
                for at in n.attribute:
                    if n.op_type == "GRU" and at.name == "linear_before_reset":
                        at.i = 0
            onnx.save(m, str(p))
    states = _with_states(dyn, ref)
    n_outputs = len(onnx.load(str(dyn)).graph.output)
    c = Compiled(fixed, work, name)
    T = shape[taxis]
    assert f"#define {name.upper()}_WINDOW {T}" in c.h
    assert f"void {name}_step(const float *input, float *output);" in c.h
    assert c.n_in == T * c.s_in and c.n_state == len(states) * c.graph.step_graph.tensors[
        c.graph.step_graph.states[0][0]].size

    def shape_of(t):
        return tuple(t if k == taxis else d for k, d in enumerate(shape))

    _check_stream(c, ref, n_outputs, states, T, shape_of, seed=len(name))
    # the window form: against onnxruntime and (PyTorch's own GRU) PyTorch with its Jacobian
    x = np.random.default_rng(5).uniform(-1.5, 1.5, (4, c.n_in)).astype(np.float32)
    y_c, J_c = c.window(x)
    sess = ort.InferenceSession(str(fixed), providers=["CPUExecutionProvider"])
    y_o = np.array([np.concatenate([o.ravel() for o in sess.run(None, {"x": row.reshape(shape)})])
                    for row in x])
    assert rel_err(y_c, y_o) <= 1e-5
    if name != "gru_lbr0":
        y_t, J_t = _torch_ref(model, shape, x)
        print(f"onnx streaming {name} window: y vs ORT {rel_err(y_c, y_o):.1e}, vs torch "
              f"{rel_err(y_c, y_t):.1e}, J vs autograd {rel_err(J_c, J_t):.1e}")
        assert rel_err(y_c, y_t) <= 1e-5 and rel_err(J_c, J_t) <= 1e-4
        assert np.abs(J_t).max() > 1e-2


def _helper_lstm(path: Path, T, layout: int, peep: bool, seed: int, dyn: bool, B: int = 1) -> None:
    """An ONNX LSTM as onnx.helper writes it: B, peepholes P, no initial state; Y, Y_h, Y_c;
    a batch of B sequences (layout 0: the input (T, B, F) is data, as the batch is not 1)."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    F, H = 3, 4
    inits = [numpy_helper.from_array(rng.uniform(-0.6, 0.6, (1, 4 * H, F)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.uniform(-0.6, 0.6, (1, 4 * H, H)).astype(np.float32), "R"),
             numpy_helper.from_array(rng.uniform(-0.4, 0.4, (1, 8 * H)).astype(np.float32), "B")]
    ins = ["x", "W", "R", "B"]
    if peep:
        inits.append(numpy_helper.from_array(rng.uniform(-0.5, 0.5, (1, 3 * H)).astype(np.float32), "P"))
        ins += ["", "", "", "P"]
    t = "T" if dyn else T
    xs = [t, B, F] if layout == 0 else [B, t, F]
    node = helper.make_node("LSTM", ins, ["Y", "Y_h", "Y_c"], hidden_size=H, layout=layout)
    ys = ([[t, 1, B, H], [1, B, H], [1, B, H]] if layout == 0
          else [[B, t, 1, H], [B, 1, H], [B, 1, H]])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, s)
            for o, s in zip(("Y", "Y_h", "Y_c"), ys)]
    g = helper.make_graph([node], "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
                          outs, inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("layout,peep,B", [(0, True, 1), (1, True, 1), (1, False, 1),
                                           (0, True, 2)])
def test_streaming_helper_lstm_peepholes_and_layouts(work, layout, peep, B):
    name = f"hlstm_{layout}_{int(peep)}_{B}"
    T = 4
    fixed, dyn = work / f"{name}.onnx", work / f"{name}_dyn.onnx"
    _helper_lstm(fixed, T, layout, peep, 7 + layout, dyn=False, B=B)
    _helper_lstm(dyn, T, layout, peep, 7 + layout, dyn=True, B=B)
    c = Compiled(fixed, work, name)
    assert c.s_in == 3 * B and c.n_state == 8 * B

    def shape_of(t):
        return (t, B, 3) if layout == 0 else (B, t, 3)

    _check_stream(c, dyn, 3, ["Y_h", "Y_c"], T, shape_of, seed=layout, reference=layout == 1)


def test_models_without_a_streaming_form_keep_the_window_form(work):
    """A computed initial state, a bidirectional layer, a mean over the window, a window of
    one step: no NAME_step, NAME_predict as before."""
    torch.manual_seed(2)
    cases = {
        "with_state": (WithState(), [(1, 4, 2), (1, 1, 4)]),
        "bidirectional": (Head(nn.GRU(3, 4, batch_first=True, bidirectional=True), 8,
                               states=False), [(1, 4, 3)]),
        "mean": (Mean(), [(1, 5, 3)]),
        "one_step": (Head(nn.LSTM(3, 4, batch_first=True), 4, states=False), [(1, 1, 3)]),
    }
    for name, (model, shapes) in cases.items():
        path = work / f"none_{name}.onnx"
        model.eval()
        torch.onnx.export(model, tuple(torch.zeros(s) for s in shapes), str(path), dynamo=False,
                          opset_version=17, input_names=[f"in{i}" for i in range(len(shapes))])
        g = load_model(path)
        assert g.step_graph is None and g.window == 0, name
        d = work / f"none_{name}"
        compile_model(path, d, name=f"n_{name}")
        h = (d / f"n_{name}.h").read_text()
        assert f"n_{name}_step(" not in h and f"n_{name}_predict(" in h


def test_layout_1_with_a_batch_has_no_streaming_form(work):
    """layout 1 with a batch of 2 sequences: the input (2, T, F) is not T rows of one step's
    input, so there is no NAME_step; the window form still compiles."""
    path = work / "hlstm_batchwise.onnx"
    _helper_lstm(path, 4, 1, True, 3, dyn=False, B=2)
    g = load_model(path)
    assert g.step_graph is None and g.window == 0 and g.input_size == 2 * 4 * 3
