"""Input shapes given by the user (``input_shapes=`` in Python, ``--input-shape`` on the command
line), which fix the dynamic dimensions of a model's inputs (a ``None`` time axis, an ONNX
``dim_param``). Shapes here leave the batch axis out, as the IR does."""

from __future__ import annotations

from typing import Mapping, Sequence, Union

from ..errors import CompileError

#: What callers pass: one shape (a one-input model) or shapes by input name.
InputShapes = Union[Sequence[int], Mapping[str, Sequence[int]], None]

#: The key of a shape given without an input name.
UNNAMED = ""


def _shape_tuple(value, what: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise CompileError(f"{what} must be a tuple of positive integers, not {value!r}")
    dims = []
    for d in value:
        if isinstance(d, bool) or not hasattr(d, "__index__") or int(d) <= 0:
            raise CompileError(f"{what} must be a tuple of positive integers, not "
                               f"{tuple(value)!r}")
        dims.append(int(d))
    if not dims:
        raise CompileError(f"{what} is empty")
    return tuple(dims)


def normalise(input_shapes: InputShapes) -> dict[str, tuple[int, ...]]:
    """``input_shapes`` as {input name: shape} ({UNNAMED: shape} for a bare shape)."""
    if input_shapes is None:
        return {}
    if isinstance(input_shapes, Mapping):
        out = {}
        for name, shape in input_shapes.items():
            if not isinstance(name, str) or not name:
                raise CompileError(f"input_shapes keys must be input names, not {name!r}")
            out[name] = _shape_tuple(shape, f"the shape given for input '{name}'")
        return out
    return {UNNAMED: _shape_tuple(input_shapes, "input_shapes")}


def _shown(dims: Sequence) -> str:
    parts = ["None" if d is None else str(d) for d in dims]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


class GivenShapes:
    """The shapes a user gave, checked against a model's inputs as a front-end reads them."""

    def __init__(self, input_shapes: InputShapes, file: str = "") -> None:
        self.shapes = normalise(input_shapes)
        self.file = file

    def __bool__(self) -> bool:
        return bool(self.shapes)

    def check_names(self, names: Sequence[str]) -> None:
        """Refuse shapes for inputs the model does not have (before any shape is fixed)."""
        inputs = ", ".join(f"'{n}'" for n in names) or "none"
        for given in self.shapes:
            if given == UNNAMED:
                if len(names) != 1:
                    raise CompileError(
                        f"a shape without an input name fits a one-input model, and this one "
                        f"has {len(names)} inputs ({inputs}): name it, as --input-shape "
                        "NAME=d1,d2,...", file=self.file)
            elif given not in names:
                raise CompileError(f"a shape is given for input '{given}', which the model "
                                   f"does not have (its inputs: {inputs})", file=self.file)

    def get(self, name: str, n_inputs: int = 1) -> tuple[int, ...] | None:
        if name in self.shapes:
            return self.shapes[name]
        if UNNAMED in self.shapes and n_inputs == 1:
            return self.shapes[UNNAMED]
        return None

    def fix(self, name: str, dims: Sequence[int | None], labels: Sequence[str | None] = (),
            n_inputs: int = 1, batch_note: str = "batch aside") -> tuple[int, ...]:
        """The fixed shape of input ``name`` whose batch-less ``dims`` hold ``None`` where
        dynamic (``labels``: their names in the file, e.g. ONNX dim_params)."""
        dims = [None if d is None or int(d) <= 0 else int(d) for d in dims]
        labels = list(labels) + [None] * (len(dims) - len(labels))
        given = self.get(name, n_inputs)
        if given is not None:
            if len(given) != len(dims):
                def axes(n: int) -> str:
                    return f"{n} axis" if n == 1 else f"{n} axes"
                raise CompileError(
                    f"input '{name}': the given shape {_shown(given)} has {axes(len(given))}, "
                    f"the model's input {_shown(dims)} has {axes(len(dims))} ({batch_note})",
                    file=self.file)
            for i, (d, g) in enumerate(zip(dims, given)):
                if d is not None and d != g:
                    raise CompileError(
                        f"input '{name}': the given shape {_shown(given)} contradicts the "
                        f"model's {_shown(dims)} ({batch_note}) on axis {i}: the model fixes "
                        f"it to {d}, the given shape says {g}", file=self.file)
            return tuple(given)
        if any(d is None for d in dims):
            dyn = [i for i, d in enumerate(dims) if d is None]
            place = [str(d) if d is not None else (labels[i] or f"d{i}")
                     for i, d in enumerate(dims)]
            which = ", ".join(f"{i}" + (f" ('{labels[i]}')" if labels[i] else "") for i in dyn)
            shown = _shown(dims)
            numbers = ", ".join(place[i] for i in dyn)
            raise CompileError(
                f"input '{name}' of shape {shown} ({batch_note}) has a dynamic "
                f"{'axis' if len(dyn) == 1 else 'axes'} {which}; the generated C needs fixed "
                f"shapes: pass --input-shape {name}={','.join(place)} with a number for "
                f"{numbers} (input_shapes= in Python)", file=self.file)
        return tuple(dims)
