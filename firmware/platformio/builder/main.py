"""SCons build script of the ``nnmpc`` platform: system arm-none-eabi-gcc, QEMU as the target.

``pio run`` compiles and links the project into ``firmware.elf`` (size-checked against the
board's ``upload.maximum_size`` / ``maximum_ram_size``). ``pio run -t upload`` boots the image in
QEMU with UART0 on a loopback TCP server (``upload_port = socket://127.0.0.1:PORT``, default
4321) and waits for the firmware to exit; connect with ``nnmpc monitor --port socket://...``.
"""

import re
from os.path import join

from SCons.Script import AlwaysBuild, Builder, Default, DefaultEnvironment

env = DefaultEnvironment()
board = env.BoardConfig()

env.Replace(
    AR="arm-none-eabi-gcc-ar",
    AS="arm-none-eabi-as",
    CC="arm-none-eabi-gcc",
    CXX="arm-none-eabi-g++",
    GDB="arm-none-eabi-gdb",
    OBJCOPY="arm-none-eabi-objcopy",
    RANLIB="arm-none-eabi-gcc-ranlib",
    SIZETOOL="arm-none-eabi-size",
    ARFLAGS=["rc"],
    SIZEPROGREGEXP=r"^(?:\.isr_vector|\.text|\.data|\.rodata|\.ARM\.exidx)\s+(\d+).*",
    SIZEDATAREGEXP=r"^(?:\.data|\.bss|\.stack)\s+(\d+).*",
    SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    SIZEPRINTCMD="$SIZETOOL -B -d $SOURCES",
    PROGNAME="firmware",
    PROGSUFFIX=".elf",
)

machine_flags = ["-mthumb", "-mcpu=%s" % board.get("build.cpu")]
if board.get("build.fpu", ""):
    machine_flags.append("-mfpu=%s" % board.get("build.fpu"))
machine_flags.append("-mfloat-abi=%s" % board.get("build.float_abi", "soft"))

env.Append(
    ASFLAGS=machine_flags,
    CCFLAGS=machine_flags + ["-ffunction-sections", "-fdata-sections"],
    CFLAGS=["-std=c99"],
    LINKFLAGS=machine_flags + [
        "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
        "-Wl,--defsym=__flash_bytes=%d" % int(board.get("upload.maximum_size")),
        "-Wl,--defsym=__ram_bytes=%d" % int(board.get("upload.maximum_ram_size")),
    ],
    LIBS=["m"],
    BUILDERS=dict(
        ElfToBin=Builder(
            action=env.VerboseAction("$OBJCOPY -O binary $SOURCES $TARGET", "Bin Output -> $TARGET"),
            suffix=".bin",
        )
    ),
)

target_elf = env.BuildProgram()
target_bin = env.ElfToBin(join("$BUILD_DIR", "${PROGNAME}"), target_elf)
env.Depends(target_bin, "checkprogsize")
AlwaysBuild(env.Alias("nobuild", target_bin))
target_buildprog = env.Alias("buildprog", target_bin, target_bin)

port = env.subst("$UPLOAD_PORT") or "socket://127.0.0.1:4321"
m = re.match(r"^(?:socket://)?([\w.\-]+):(\d+)$", port)
if not m:
    m = re.match(r"^()(\d+)$", port)
host, tcp = (m.group(1) or "127.0.0.1", m.group(2)) if m else ("127.0.0.1", "4321")
qemu = " ".join([
    "qemu-system-arm", "-M", board.get("build.qemu_machine"), "-nographic", "-monitor", "none",
    "-serial", "tcp:%s:%s,server=on,wait=on,nodelay=on" % (host, tcp),
    "-semihosting-config", "enable=on,target=native", "-kernel", "$SOURCE",
])
upload = env.Alias("upload", target_elf, env.VerboseAction(
    qemu, "Booting $SOURCE in QEMU; UART0 waits on socket://%s:%s" % (host, tcp)))
AlwaysBuild(upload)

Default([target_buildprog])
