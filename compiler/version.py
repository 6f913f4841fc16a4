"""The compiler's version, stamped into every generated file."""

__version__ = "0.1.0"
