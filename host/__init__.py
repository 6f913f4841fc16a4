"""nnmpc host tools, one sub-package per pipeline stage:

``plants`` (simulated plants) -> ``learn`` (datasets, training, exports) -> the compiler
(:mod:`nnmpc.compiler`) -> ``build`` (boards, firmware, PlatformIO) -> ``link`` (protocol,
serial client, emulator) -> ``loop`` (closed-loop runs, logs, plots, monitor); ``bench``
measures, ``cli`` parses the ``nnmpc`` command line. Each stage imports only the stages before
it; the compiler never imports the host.
"""
