"""Simulated plants: one small interface (:class:`Plant`), several soft-robot-like systems."""

from __future__ import annotations

from .base import NetSpec, Plant, Signal
from .arm2 import TwoLinkArm
from .hasel import HaselActuator
from .msd import MassSpringDamper
from .tendon import TendonSegment

#: Every plant by its CLI name.
PLANTS: dict[str, type[Plant]] = {
    cls.name: cls for cls in (TwoLinkArm, MassSpringDamper, TendonSegment, HaselActuator)
}


def get_plant(name: str, **kwargs) -> Plant:
    """The simulated plant called ``name`` (``nnmpc plants`` lists them), built with
    ``kwargs`` as its parameters."""
    from ..errors import NnmpcError

    try:
        cls = PLANTS[name]
    except KeyError:
        raise NnmpcError(f"unknown plant '{name}' (known: {', '.join(sorted(PLANTS))})") from None
    return cls(**kwargs)


__all__ = ["PLANTS", "HaselActuator", "MassSpringDamper", "NetSpec", "Plant", "Signal",
           "TendonSegment", "TwoLinkArm", "get_plant"]
