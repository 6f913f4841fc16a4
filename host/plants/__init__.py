"""Simulated plants: one small interface (:class:`Plant`), several soft-robot-like systems."""

from __future__ import annotations

from .base import Plant, Signal
from .arm2 import TwoLinkArm

#: Every plant by its CLI name.
PLANTS: dict[str, type[Plant]] = {
    TwoLinkArm.name: TwoLinkArm,
}


def get_plant(name: str, **kwargs) -> Plant:
    from ..errors import NnmpcError

    try:
        cls = PLANTS[name]
    except KeyError:
        raise NnmpcError(f"unknown plant '{name}' (known: {', '.join(sorted(PLANTS))})") from None
    return cls(**kwargs)


__all__ = ["PLANTS", "Plant", "Signal", "TwoLinkArm", "get_plant"]
