"""Models from the wild: real PyTorch modules exported with torch.onnx.export (the TorchScript
exporter, opset 17, batch 1 as exported by default), compiled by nnmpc and compared with
PyTorch itself (outputs and exact autograd Jacobians) and with onnxruntime. All models are
built into one host program (tests/onnx_batch.py)."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_batch import build_batch
from support import rel_err

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn


class SeqHead(nn.Module):
    """A recurrent layer over the window, then a linear head on every step."""

    def __init__(self, cell: nn.Module, hidden: int, out: int = 2) -> None:
        super().__init__()
        self.cell, self.head = cell, nn.Linear(hidden, out)

    def forward(self, x):
        y = self.cell(x)[0]
        return self.head(y)


class LastStep(nn.Module):
    """Two stacked LSTM layers, the last step's output into a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 5, num_layers=2, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        y, _ = self.lstm(x)
        return torch.tanh(self.head(y[:, -1:, :].flatten(1)))


class WithState(nn.Module):
    """An RNN whose initial state is a second model input."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(2, 4, nonlinearity="relu", batch_first=True)

    def forward(self, x, h0):
        y, h = self.rnn(x, h0)
        return y + 0.5 * h.transpose(0, 1)


class TimeFirst(nn.Module):
    """batch_first=False: the input (T, 1, F) has no batch axis in front (T is data)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4)

    def forward(self, x):
        return self.gru(x)[0]


class Pools(nn.Module):
    """count_include_pad, ceil_mode and dilations on pools, a transposed convolution, PReLU,
    Hardswish, resizing, a channel log-softmax and softmax, clamp, abs/sqrt/log, a mean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True, ceil_mode=True)
        self.max = nn.MaxPool2d(2, stride=1, dilation=2, ceil_mode=True)
        self.avg2 = nn.AvgPool2d(2, stride=2, ceil_mode=True)
        self.up = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
        self.prelu = nn.PReLU(3)
        self.act = nn.Hardswish()
        self.v = nn.Parameter(torch.randn(4))

    def forward(self, x):
        y = self.avg(self.conv(x))                      # (1, 4, 4, 4) from 7x7
        a = self.max(y)
        b = self.avg2(y)                                 # (1, 4, 2, 2)
        b = nn.functional.interpolate(b, scale_factor=2, mode="bilinear", align_corners=False)
        z = self.act(self.prelu(self.up(a + b[..., :a.shape[2], :a.shape[3]])))
        z = torch.log_softmax(z, dim=1) + torch.softmax(z, dim=2)
        z = torch.clamp(z, -2.5, 0.7) + torch.sqrt(z.abs() + 0.1) - torch.log(z.abs() + 0.5)
        m = nn.functional.interpolate(z, scale_factor=2, mode="nearest").mean(dim=(2, 3))
        return torch.cat([m, z.flatten(1)[:, :5] @ torch.ones(5, 1), (z @ self.v).flatten(1)], 1)


def _models():
    torch.manual_seed(0)
    return {
        "gru": (SeqHead(nn.GRU(3, 6, batch_first=True), 6), [(1, 5, 3)]),
        "lstm": (SeqHead(nn.LSTM(3, 4, batch_first=True), 4), [(1, 4, 3)]),
        "rnn_tanh": (SeqHead(nn.RNN(2, 5, batch_first=True), 5), [(1, 6, 2)]),
        "lstm2_last": (LastStep(), [(1, 5, 3)]),
        "rnn_state": (WithState(), [(1, 4, 2), (1, 1, 4)]),
        "gru_time_first": (TimeFirst(), [(4, 1, 3)]),
        "pools": (Pools(), [(1, 2, 7, 7)]),
    }


def _export(model, shapes, path):
    model.eval()
    args = tuple(torch.zeros(s) for s in shapes)
    torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17,
                      input_names=[f"in{i}" for i in range(len(shapes))])


def _torch_ref(model, shapes, x: np.ndarray):
    """Outputs and autograd Jacobians of the model at the flat inputs x (one row each)."""
    sizes = [int(np.prod(s)) for s in shapes]

    def f(flat):
        parts, off = [], 0
        for s, n in zip(shapes, sizes):
            parts.append(flat[off:off + n].reshape(s))
            off += n
        return model(*parts).reshape(-1)

    ys, Js = [], []
    for row in x:
        t = torch.tensor(row, dtype=torch.float32)
        with torch.no_grad():
            ys.append(f(t).numpy())
        Js.append(torch.autograd.functional.jacobian(f, t).numpy())
    return np.array(ys), np.array(Js)


def _ort(path, shapes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = []
    for row in x:
        feeds, off = {}, 0
        for name, s in zip(names, shapes):
            n = int(np.prod(s))
            feeds[name] = row[off:off + n].reshape(s).astype(np.float32)
            off += n
        out.append(np.concatenate([np.asarray(o).reshape(-1) for o in sess.run(None, feeds)]))
    return np.array(out)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from nnmpc.compiler import load_model

    root = tmp_path_factory.mktemp("torch")
    models, graphs = {}, []
    for name, (model, shapes) in _models().items():
        path = root / f"{name}.onnx"
        _export(model, shapes, path)
        models[name] = (model, shapes, path)
        graphs.append((f"pt_{name}", load_model(path)))
    # the same GRU with linear_before_reset=0 (PyTorch always writes 1): checked against ORT
    m = onnx.load(str(root / "gru.onnx"))
    for n in m.graph.node:
        if n.op_type == "GRU":
            for at in n.attribute:
                if at.name == "linear_before_reset":
                    at.i = 0
    onnx.save(m, str(root / "gru_lbr0.onnx"))
    graphs.append(("pt_gru_lbr0", load_model(root / "gru_lbr0.onnx")))
    batch = build_batch(graphs, root / "c")
    return models, batch, root


@pytest.mark.parametrize("name", list(_models()))
def test_pytorch_export_matches_torch_and_its_jacobian(exported, name):
    models, batch, _ = exported
    model, shapes, path = models[name]
    n_in = sum(int(np.prod(s)) for s in shapes)
    x = np.random.default_rng(3).uniform(-1.5, 1.5, (6, n_in)).astype(np.float32)
    y_c, J_c = batch.run(f"pt_{name}", x)
    y_t, J_t = _torch_ref(model, shapes, x)
    assert y_c.shape == y_t.shape
    assert rel_err(y_c, y_t) <= 1e-5, name
    assert rel_err(y_c, _ort(path, shapes, x)) <= 1e-5, name
    assert rel_err(J_c, J_t) <= 1e-4, name
    assert np.abs(J_t).max() > 1e-2  # the Jacobian is not trivially zero


def test_recurrent_exports_are_the_native_onnx_ops(exported):
    models, _, _ = exported
    ops = {n: {nd.op_type for nd in onnx.load(str(p)).graph.node} for n, (_, _, p) in models.items()}
    assert "GRU" in ops["gru"] and "LSTM" in ops["lstm"] and "RNN" in ops["rnn_tanh"]
    for n in ("GRU", "LSTM", "RNN"):
        node = next(nd for (_, _, p) in models.values() for nd in onnx.load(str(p)).graph.node
                    if nd.op_type == n)
        if n == "GRU":
            assert any(a.name == "linear_before_reset" and a.i == 1 for a in node.attribute)


def test_gru_without_linear_before_reset_matches_onnxruntime(exported):
    _, batch, root = exported
    shapes = [(1, 5, 3)]
    x = np.random.default_rng(4).uniform(-1.5, 1.5, (4, 15)).astype(np.float32)
    y_c, J_c = batch.run("pt_gru_lbr0", x)
    ref = lambda v: _ort(root / "gru_lbr0.onnx", shapes, v)  # noqa: E731
    y_r = ref(x)
    assert rel_err(y_c, y_r) <= 1e-5
    assert rel_err(y_c, _ort(root / "gru.onnx", shapes, x)) > 1e-3  # the attribute matters
    h = 1e-3
    x0 = x[0].astype(np.float64)
    pts = np.array([x0 + h * e for e in np.eye(15)] + [x0 - h * e for e in np.eye(15)])
    y = ref(pts.astype(np.float32)).astype(np.float64)
    J_fd = ((y[:15] - y[15:]) / (2 * h)).T
    assert np.abs(J_c[0] - J_fd).max() <= 5e-3 * (1 + np.abs(J_fd).max())
