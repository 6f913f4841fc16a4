"""Count the instructions a Cortex-M4F function executes, and estimate its cycles.

The function runs from its ELF in the unicorn CPU emulator (Thumb-2 + VFP, Cortex-M4 model).
A block hook sees every translated block as it executes; each block is decoded once with
capstone and costed with :data:`COST_TABLE`. Counting whole blocks (not single instructions)
also counts instructions inside IT blocks whose condition fails, which the core issues too.

The cycle figure is an *estimate* from a simplified Cortex-M4 cost table (after the Cortex-M4
TRM instruction timings): no wait states, no bus contention, no interrupts.

Taken branches are found by comparing the address of the next executed block with the
fall-through address of the previous one: a block whose successor is not the instruction after
its last one ended with a taken branch (or a call, a return, a table branch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: The cost table, in the words the results files quote.
COST_TABLE = (
    "data processing, MOV, shifts, compares, IT: 1; MUL/SMULL/UMULL/SMLAL/UMLAL and DSP MACs: 1; "
    "MLA/MLS: 2; SDIV/UDIV: 7; a single LDR/STR/VLDR/VSTR (any width): 2, or 1 when the previous "
    "instruction was also a single load/store (pipelined); LDRD/STRD: 3; "
    "LDM/STM/PUSH/POP/VLDM/VSTM/VPUSH/VPOP: 1 + words; a branch: 1, +2 when taken "
    "(B, BL, BX, BLX, CBZ/CBNZ, POP {pc}, LDR pc, any write of pc); TBB/TBH: 2, +2 when taken; "
    "VADD/VSUB/VMUL/VNMUL/VABS/VNEG/VMOV/VCVT/VCMP/VMRS/VMSR: 1; "
    "VMLA/VMLS/VNMLA/VNMLS/VFMA/VFMS/VFNMA/VFNMS: 3; VDIV, VSQRT: 14")

FLASH_BASE = 0x00000000
RAM_BASE = 0x20000000
RAM_SIZE = 0x00100000          # 1 MiB is plenty for any bench image
STACK_TOP = RAM_BASE + RAM_SIZE
MAGIC_RETURN = 0x0FFFFFF0      # LR on entry; reaching it ends the call
_MAGIC_PAGE = MAGIC_RETURN & ~0xFFF
STACK_PAINT = 0xA5


# ---- the cost of one instruction ------------------------------------------------------

_KIND_SINGLE_LS = "ls"     # single load/store: 2, or 1 after another single load/store
_KIND_OTHER = "op"


def _base(mn: str) -> str:
    """Mnemonic without width qualifier, data type or condition code: 'vldr', 'ldr', 'add'."""
    mn = mn.lower().split(".")[0]
    return mn


_CONDS = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt",
          "gt", "le", "al")

_MULS = {"mul", "muls", "smull", "umull", "smlal", "umlal", "smlad", "smladx", "smlsd", "smlsdx",
         "smuad", "smuadx", "smusd", "smusdx", "smlabb", "smlabt", "smlatb", "smlatt", "smlawb",
         "smlawt", "smulbb", "smulbt", "smultb", "smultt", "smulwb", "smulwt", "smmul", "smmulr",
         "smmla", "smmlar", "smmls", "smmlsr", "smlald", "smlaldx", "smlsld", "smlsldx",
         "smlalbb", "smlalbt", "smlaltb", "smlaltt", "umaal", "usad8", "usada8"}
_MLAS = {"mla", "mls"}
_DIVS = {"sdiv", "udiv"}
_SINGLE_LS = {"ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "str", "strb", "strh", "ldrt", "ldrbt",
              "ldrht", "ldrsbt", "ldrsht", "strt", "strbt", "strht", "ldrex", "ldrexb", "ldrexh",
              "strex", "strexb", "strexh", "vldr", "vstr"}
_DOUBLE_LS = {"ldrd", "strd"}
_MULTI_LS = {"ldm", "ldmia", "ldmdb", "ldmfd", "ldmea", "stm", "stmia", "stmdb", "stmfd", "stmea",
             "push", "pop", "vldm", "vldmia", "vldmdb", "vstm", "vstmia", "vstmdb", "vpush", "vpop"}
_FMAS = {"vmla", "vmls", "vnmla", "vnmls", "vfma", "vfms", "vfnma", "vfnms"}
_FSLOW = {"vdiv", "vsqrt"}
_BRANCHES = {"b", "bl", "bx", "blx", "cbz", "cbnz"}
_TABLE_BRANCHES = {"tbb", "tbh"}


def _strip_cond(mn: str, known: set[str]) -> str:
    """Capstone prints conditional forms ('addeq', 'bne', 'vmovgt'); map them to the base."""
    if mn in known:
        return mn
    for c in _CONDS:
        if mn.endswith(c) and mn[:-2] in known:
            return mn[:-2]
    # flag-setting forms: 'adds', 'muls', 'addseq'
    return mn


_ALL_KNOWN = (_MULS | _MLAS | _DIVS | _SINGLE_LS | _DOUBLE_LS | _MULTI_LS | _FMAS | _FSLOW
              | _BRANCHES | _TABLE_BRANCHES)


def _reg_words(op_str: str) -> int:
    """Words moved by a register list '{r4, r5, lr}' or '{s16, s17}' or '{d8, d9}'."""
    inside = op_str[op_str.index("{") + 1:op_str.index("}")]
    words = 0
    for part in inside.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = (p.strip() for p in part.split("-"))
            n = int(b[1:]) - int(a[1:]) + 1
            words += n * (2 if a.startswith("d") else 1)
        else:
            words += 2 if part.startswith("d") else 1
    return words


def classify(mnemonic: str, op_str: str) -> tuple[int, str, bool]:
    """(base cycles, kind, writes pc) of one instruction, before the pipelining and
    taken-branch adjustments."""
    mn = _strip_cond(_base(mnemonic), _ALL_KNOWN)
    writes_pc = False
    if mn in _BRANCHES:
        return 1, _KIND_OTHER, True
    if mn in _TABLE_BRANCHES:
        return 2, _KIND_OTHER, True
    if mn in _SINGLE_LS:
        dest = op_str.split(",")[0].strip()
        return 2, _KIND_SINGLE_LS, mn.startswith("ldr") and dest == "pc"
    if mn in _DOUBLE_LS:
        return 3, _KIND_OTHER, False
    if mn in _MULTI_LS:
        words = _reg_words(op_str)
        writes_pc = mn in ("pop", "ldm", "ldmia", "ldmfd", "ldmdb", "ldmea") and "pc" in op_str
        return 1 + words, _KIND_OTHER, writes_pc
    if mn in _FMAS:
        return 3, _KIND_OTHER, False
    if mn in _FSLOW:
        return 14, _KIND_OTHER, False
    if mn in _MLAS:
        return 2, _KIND_OTHER, False
    if mn in _DIVS:
        return 7, _KIND_OTHER, False
    # MUL family and every other data-processing, FP or system instruction: 1.
    dest = op_str.split(",")[0].strip() if op_str else ""
    return 1, _KIND_OTHER, dest == "pc" and not mn.startswith(("cmp", "cmn", "tst", "teq"))


# ---- a block, decoded once ----------------------------------------------------------------

@dataclass
class _Block:
    n: int                       # instructions
    costs: list[int]             # base cost of each
    single_ls: list[bool]        # whether each is a single load/store
    ends_in_branch: bool         # last instruction can write pc
    mnemonics: list[str]
    cycles_by_entry: dict[bool, int] = field(default_factory=dict)

    def cycles(self, prev_single_ls: bool) -> int:
        c = self.cycles_by_entry.get(prev_single_ls)
        if c is None:
            c, prev = 0, prev_single_ls
            for cost, ls in zip(self.costs, self.single_ls):
                c += 1 if (ls and prev) else cost
                prev = ls
            self.cycles_by_entry[prev_single_ls] = c
        return c


@dataclass
class CallResult:
    """What one call executed."""
    instructions: int
    cycles: int                  # estimate, see COST_TABLE
    taken_branches: int
    stack_bytes: int             # deepest stack use below the entry SP
    histogram: dict[str, int]    # executed instructions by mnemonic (if asked for)
    profile: dict[str, int] = field(default_factory=dict)  # estimated cycles by function


class CortexM4Counter:
    """Load an ELF once; call its functions and count what they execute."""

    def __init__(self, elf_path: str | Path, *, histogram: bool = False,
                 profile: bool = False) -> None:
        from capstone import CS_ARCH_ARM, CS_MODE_MCLASS, CS_MODE_THUMB, Cs
        from elftools.elf.constants import SH_FLAGS
        from elftools.elf.elffile import ELFFile
        from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_MODE_MCLASS, UC_MODE_THUMB, Uc
        from unicorn.arm_const import UC_CPU_ARM_CORTEX_M4

        self.elf_path = Path(elf_path)
        self.symbols: dict[str, tuple[int, int]] = {}
        sections: list[tuple[int, bytes]] = []
        with open(self.elf_path, "rb") as fh:
            elf = ELFFile(fh)
            for sec in elf.iter_sections():
                if sec["sh_flags"] & SH_FLAGS.SHF_ALLOC and sec["sh_type"] != "SHT_NOBITS" \
                        and sec["sh_size"]:
                    sections.append((sec["sh_addr"], sec.data()))
            symtab = elf.get_section_by_name(".symtab")
            for sym in symtab.iter_symbols():
                if sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT") and sym.name:
                    self.symbols[sym.name] = (sym["st_value"], sym["st_size"])
        self._uc = uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M4)
        uc.mem_map(FLASH_BASE, 0x00400000)
        uc.mem_map(RAM_BASE, RAM_SIZE)
        uc.mem_map(_MAGIC_PAGE, 0x1000)
        uc.mem_write(MAGIC_RETURN, b"\x00\xbf" * 4)   # nops; never executed
        self._image = sections
        self._cs = Cs(CS_ARCH_ARM, CS_MODE_THUMB | CS_MODE_MCLASS)
        self._blocks: dict[tuple[int, int], _Block] = {}
        self._histogram = histogram
        self._profile = profile
        funcs = sorted((a & ~1, n) for n, (a, sz) in self.symbols.items() if sz)
        self._func_addrs = [a for a, _ in funcs]
        self._func_names = [n for _, n in funcs]
        self._reset_counts()
        uc.hook_add(UC_HOOK_BLOCK, self._on_block)
        self.reload()

    # -- memory -------------------------------------------------------------------------------
    def reload(self) -> None:
        """Restore every loaded section (initialised data included) and clear RAM."""
        self._uc.mem_write(RAM_BASE, b"\x00" * RAM_SIZE)
        for addr, data in self._image:
            self._uc.mem_write(addr, data)

    def address(self, symbol: str) -> int:
        if symbol not in self.symbols:
            raise KeyError(f"{self.elf_path.name}: no symbol '{symbol}'")
        return self.symbols[symbol][0]

    def write(self, addr: int, data: bytes) -> None:
        self._uc.mem_write(addr, data)

    def read(self, addr: int, size: int) -> bytes:
        return bytes(self._uc.mem_read(addr, size))

    # -- counting -----------------------------------------------------------------------------
    def _reset_counts(self) -> None:
        self._n = self._cyc = self._taken = 0
        self._prev: _Block | None = None
        self._prev_end = 0
        self._prev_ls = False
        self._hist: dict[str, int] = {}
        self._prof: dict[str, int] = {}

    def _decode(self, address: int, size: int) -> _Block:
        code = bytes(self._uc.mem_read(address, size))
        costs, lss, mns = [], [], []
        last_pc = False
        decoded = 0
        for insn in self._cs.disasm(code, address):
            cost, kind, wpc = classify(insn.mnemonic, insn.op_str)
            costs.append(cost)
            lss.append(kind == _KIND_SINGLE_LS)
            mns.append(_base(insn.mnemonic))
            last_pc = wpc
            decoded += insn.size
        if decoded != size:
            raise RuntimeError(f"cannot decode the block at {address:#x} ({decoded}/{size} bytes)")
        return _Block(len(costs), costs, lss, last_pc, mns)

    def _function_of(self, address: int) -> str:
        import bisect
        i = bisect.bisect_right(self._func_addrs, address) - 1
        return self._func_names[i] if i >= 0 else "?"

    def _on_block(self, uc, address: int, size: int, _user) -> None:
        if self._prev is not None and address != self._prev_end:
            self._cyc += 2          # the previous block's last instruction was a taken branch
            self._taken += 1
            if self._profile:
                f = self._function_of(self._prev_end - 1)
                self._prof[f] = self._prof.get(f, 0) + 2
        if address == MAGIC_RETURN:
            uc.emu_stop()
            self._prev = None
            return
        key = (address, size)
        blk = self._blocks.get(key)
        if blk is None:
            blk = self._blocks[key] = self._decode(address, size)
        c = blk.cycles(self._prev_ls)
        self._n += blk.n
        self._cyc += c
        self._prev_ls = blk.single_ls[-1]
        self._prev = blk
        self._prev_end = address + size
        if self._histogram:
            for m in blk.mnemonics:
                self._hist[m] = self._hist.get(m, 0) + 1
        if self._profile:
            f = self._function_of(address)
            self._prof[f] = self._prof.get(f, 0) + c

    def call(self, function: str | int, args: tuple[int, ...] = (), *,
             max_instructions: int = 50_000_000) -> CallResult:
        """Call ``function`` (a symbol or an address) with integer/pointer ``args`` (AAPCS: the
        first four in r0..r3, the rest on the stack). Stack use is measured below the
        arguments."""
        import struct

        from unicorn.arm_const import (UC_ARM_REG_LR, UC_ARM_REG_R0, UC_ARM_REG_R1,
                                       UC_ARM_REG_R2, UC_ARM_REG_R3, UC_ARM_REG_SP)
        addr = self.address(function) if isinstance(function, str) else function
        uc = self._uc
        stacked = [a & 0xFFFFFFFF for a in args[4:]]
        sp = (STACK_TOP - 4 * len(stacked)) & ~7
        stack_floor = STACK_TOP - 0x10000
        uc.mem_write(stack_floor, bytes([STACK_PAINT]) * 0x10000)
        if stacked:
            uc.mem_write(sp, struct.pack(f"<{len(stacked)}I", *stacked))
        for reg, val in zip((UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3), args):
            uc.reg_write(reg, val & 0xFFFFFFFF)
        uc.reg_write(UC_ARM_REG_SP, sp)
        uc.reg_write(UC_ARM_REG_LR, MAGIC_RETURN | 1)
        self._reset_counts()
        uc.emu_start(addr | 1, MAGIC_RETURN, count=max_instructions)
        if self._prev is not None:
            # Unicorn stopped at the return address before the block hook saw it: the return
            # itself was the last taken branch.
            from unicorn.arm_const import UC_ARM_REG_PC
            if uc.reg_read(UC_ARM_REG_PC) & ~1 != MAGIC_RETURN:
                raise RuntimeError(f"{function}: did not return within {max_instructions} "
                                   "instructions")
            self._cyc += 2
            self._taken += 1
            if self._profile:
                f = self._function_of(self._prev_end - 1)
                self._prof[f] = self._prof.get(f, 0) + 2
            self._prev = None
        painted = bytes(uc.mem_read(stack_floor, sp - stack_floor))
        untouched = len(painted) - len(painted.lstrip(bytes([STACK_PAINT])))
        used = len(painted) - untouched
        return CallResult(self._n, self._cyc, self._taken, used, dict(self._hist), dict(self._prof))
