"""PlatformIO development platform ``nnmpc``: emulated Cortex-M boards, system toolchain.

Nothing to install: the builder calls ``arm-none-eabi-gcc`` and ``qemu-system-arm`` from PATH.
"""

from platformio.public import PlatformBase


class NnmpcPlatform(PlatformBase):
    pass
