"""Errors the host tools raise for the CLI to print as one clear line (no stack trace)."""

from __future__ import annotations


class NnmpcError(Exception):
    """A user-facing failure: bad input, a missing tool, a board that did not answer."""


class ToolMissing(NnmpcError):
    """An external program is not installed; the message says how to install it."""
