"""Errors raised by the compiler. One exception type, carrying the file and layer at fault."""

from __future__ import annotations


class CompileError(Exception):
    """A model that cannot be compiled. ``str()`` gives one line a user can act on."""

    def __init__(self, message: str, *, file: str = "", layer: str = "") -> None:
        self.message = message
        self.file = file
        self.layer = layer
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.layer:
            where.append(f"layer '{self.layer}'")
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message
