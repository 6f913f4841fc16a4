"""nnmpc host tools: plants, training, firmware builds, the emulator runner, serial clients
and the ``nnmpc`` command line. Uses :mod:`nnmpc.compiler`; the compiler never uses this."""
