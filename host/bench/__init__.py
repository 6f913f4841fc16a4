"""Bench: the compiler's benchmark nets against a naive C baseline, measured on the Cortex-M4
instruction counter (estimated cycles, flash and RAM)."""
