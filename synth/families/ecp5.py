"""The Lattice ECP5: Yosys ``synth_ecp5``, nextpnr-ecp5, ecppack.

Vendor primitives (the platform hooks of :mod:`.base`):

- multipliers: :class:`ECP5Multiplier`, one MULT18X18D with its A, B and output registers.
  Yosys maps a fabric ``*`` to a MULT18X18D too, but never packs registers into it: the
  block's 3.4-3.9 ns would sit between two fabric registers. Instantiated with its own
  registers it is register to register inside the DSP (0.66 ns clock-to-out), with the same
  two cycles of latency as the fabric registers it replaces.
- memories: Yosys maps Amaranth memories onto DP16KD (always with ``REGMODE="NOREG"``:
  5.6-5.8 ns clock-to-output, yosys #5814) or TRELLIS_DPR16X4 LUT RAM. A DP16KD with
  ``REGMODE="OUTREG"`` (0.94 ns) reads one cycle later than an Amaranth memory does, so it
  cannot silently replace one in :meth:`ECP5Family.get_memory` (that hook must keep the read
  latency of the memory it lowers); it answers the hook the memory's owner asks for by name
  and whose latency it declares, :meth:`ECP5Family.get_registered_memory`:
  :class:`ECP5BlockRam`, instantiated DP16KD blocks with the output register on, when Yosys
  would have chosen block RAM; otherwise (LUT RAM, whose read is fast) the caller's own
  memory and fabric register.
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .base import BlockRam, Family, block_shape, memory_choice

__all__ = ["ECP5", "ECP5Family", "ECP5Multiplier", "ECP5BlockRam", "DP16KD"]

# DP16KD widths 1..18 (true dual port), PDPW16KD 36 bits (pseudo dual port, one write port
# of 36): both are one 18-kbit EBR; the parity bits count in the 9/18/36 widths.
DP16KD = BlockRam("DP16KD", 18432, ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024),
                                    (36, 512)), 128)


class ECP5Multiplier(wiring.Component):
    """p = a * b (signed 18 x 18) in one ECP5 MULT18X18D with its A, B and output registers,
    all on the ``sync`` clock.

    Ports: ``a``, ``b`` : In(signed(18)); ``p`` : Out(signed(36)). Latency 2: ``p`` is the
    product of the ``a`` and ``b`` of two clock edges earlier; one product per cycle.
    """

    #: Clock edges from ``a`` / ``b`` to their product at ``p`` (input and output registers).
    latency = 2

    def __init__(self, site: str | None = None):
        self._site = site
        super().__init__({"a": In(signed(18)), "b": In(signed(18)), "p": Out(signed(36))})

    def elaborate(self, platform):
        m = Module()
        ports = {f"i_A{i}": self.a[i] for i in range(18)}
        ports.update({f"i_B{i}": self.b[i] for i in range(18)})
        ports.update({f"i_C{i}": 0 for i in range(18)})
        ports.update({f"o_P{i}": self.p[i] for i in range(36)})
        # A site (nextpnr's BEL name) fixes the block's place (dsp_floorplan).
        attrs = {"a_BEL": self._site} if self._site else {}
        m.submodules.mult = Instance(
            "MULT18X18D", **attrs,
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0", p_CLK0_DIV="ENABLED", p_GSR="DISABLED",
            p_RESETMODE="SYNC",
            i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0,
            i_CLK0=ClockSignal(), i_CE0=1, i_RST0=0, **ports)
        return m


class ECP5BlockRam(wiring.Component):
    """A `depth` x `width` memory in DP16KD blocks with their output register: one write
    port (A), one read port (B, ``REGMODE_B="OUTREG"``), both on the ``sync`` clock.

    Ports: ``w_addr``, ``w_data``, ``w_en``; ``r_addr``, ``r_data``. The read port always
    reads (no enable); ``r_data`` holds the word at the ``r_addr`` of two clock edges earlier
    (:attr:`read_latency`): the block registers the address, its output register the data.
    A read of the word written at the same edge is undefined (the caller never does one).

    Blocks: the aspect (9 x 2048, 18 x 1024, ...) Yosys would use for this memory
    (:func:`~.base.block_shape`, so the fit check's count holds), `across` side by side for
    the width and `deep` stacked for the depth; a stacked memory writes the block its top
    address bits select, and picks the read block with those bits, registered twice beside
    the data, in a multiplexer after the output registers.
    """

    read_latency = 2

    #: DATA_WIDTH -> low address bits below the word address (the model's and the data
    #: sheet's AD[13:s]); in the 18-bit mode AD[1:0] are the byte enables of a write.
    _ADDRESS_SHIFT = {1: 0, 2: 1, 4: 2, 9: 3, 18: 4}

    def __init__(self, *, width: int, depth: int):
        if width < 1 or depth < 2:
            raise ValueError(f"a DP16KD memory needs width >= 1 and depth >= 2, not "
                             f"{width} x {depth}")
        shape_width, shape_depth = block_shape(DP16KD, depth, width)
        if shape_width not in self._ADDRESS_SHIFT:
            raise ValueError(f"a {depth} x {width} memory maps to the {shape_width}-bit "
                             f"PDPW16KD mode, which ECP5BlockRam does not build")
        self._width, self._depth = width, depth
        self._shape = (shape_width, shape_depth)
        self.across = math.ceil(width / shape_width)
        self.deep = math.ceil(depth / shape_depth)
        addr = range(depth)
        super().__init__({"w_addr": In(addr), "w_data": In(width), "w_en": In(1),
                          "r_addr": In(addr), "r_data": Out(width)})

    @property
    def blocks(self) -> int:
        return self.across * self.deep

    def elaborate(self, platform):
        m = Module()
        shape_width, shape_depth = self._shape
        shift = self._ADDRESS_SHIFT[shape_width]
        word_bits = (shape_depth - 1).bit_length()
        low_w = self.w_addr[:word_bits] if len(self.w_addr) > word_bits else self.w_addr
        low_r = self.r_addr[:word_bits] if len(self.r_addr) > word_bits else self.r_addr
        # AD[13:shift] is the word address; below it, the 18-bit mode's byte enables (both
        # bytes written) and zeros.
        below = Const(0b11 if shape_width == 18 else 0, shift)

        def address(low):
            return Cat(below, low, Const(0, 14 - shift - len(low)))

        padded = Signal(self.across * shape_width)
        m.d.comb += padded.eq(self.w_data)
        outputs = []
        for d in range(self.deep):
            selected = (self.w_addr >> word_bits) == d if self.deep > 1 else Const(1)
            row = Signal(self.across * shape_width, name=f"row{d}")
            outputs.append(row)
            for a in range(self.across):
                data_in = padded[a * shape_width:(a + 1) * shape_width]
                data_out = row[a * shape_width:(a + 1) * shape_width]
                ports = {}
                ad_a, ad_b = address(low_w), address(low_r)
                for i in range(14):
                    ports[f"i_ADA{i}"] = ad_a[i]
                    ports[f"i_ADB{i}"] = ad_b[i]
                for i in range(18):
                    ports[f"i_DIA{i}"] = data_in[i] if i < shape_width else 0
                    ports[f"i_DIB{i}"] = 0
                    if i < shape_width:
                        ports[f"o_DOB{i}"] = data_out[i]
                for i in range(3):
                    ports[f"i_CSA{i}"] = 0
                    ports[f"i_CSB{i}"] = 0
                m.submodules[f"block_{d}_{a}"] = Instance(
                    "DP16KD",
                    p_DATA_WIDTH_A=shape_width, p_DATA_WIDTH_B=shape_width,
                    p_REGMODE_A="NOREG", p_REGMODE_B="OUTREG",
                    p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
                    p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                    p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL",
                    p_CLKAMUX="CLKA", p_CLKBMUX="CLKB", p_GSR="DISABLED",
                    i_CLKA=ClockSignal(), i_CEA=1, i_OCEA=0, i_WEA=self.w_en & selected,
                    i_RSTA=0,
                    i_CLKB=ClockSignal(), i_CEB=1, i_OCEB=1, i_WEB=0, i_RSTB=0,
                    **ports)
        if self.deep == 1:
            m.d.comb += self.r_data.eq(outputs[0])
        else:
            # The block a read came from, beside its address and its data register.
            top = Signal(range(self.deep), name="read_block")
            top_out = Signal(range(self.deep), name="read_block_out")
            m.d.sync += [top.eq(self.r_addr >> word_bits), top_out.eq(top)]
            choice = outputs[-1]
            for d in reversed(range(self.deep - 1)):
                choice = Mux(top_out == d, outputs[d], choice)
            m.d.comb += self.r_data.eq(choice)
        return m


class ECP5Family(Family):
    name = "ecp5"
    dsp_name = "MULT18X18D"
    dsp_width = 18
    dsp_min_product = 0
    bram = DP16KD
    synth = "synth_ecp5"
    # Yosys 0.70's abc9 takes a wire named like a bit of another (Amaranth names a view's
    # fields `r_data[1]` beside the whole `r_data`) for that bit: on a synthesis top it
    # fails an assertion in ABC_OPS_REINTEGRATE ("GetSize(conn.first) ==
    # GetSize(conn.second)"; the ECP5-85k's 64 x 5 mix with product_registers 3), on a board
    # top two flip-flops drive one bit (see board_options). Such names are made internal.
    synth_prelude = "rename -hide w:*]\n"
    # lutram: no block RAM (no EBR clock-to-output in a read path); block: no LUT RAM.
    ram_options = {"auto": "", "lutram": " -nobram", "block": " -nolutram"}
    nextpnr = "nextpnr-ecp5"
    packer = "ecppack"
    constraints_suffix = ".lpf"
    placed_suffix = ".config"
    bitstream_suffix = ".bit"
    pnr_dsp = "MULT18X18D"
    pnr_bram = "DP16KD"
    # One TRELLIS_RAMW site per 16x4 DPR16X4 LUT-RAM unit.
    pnr_lutram = "TRELLIS_RAMW"
    pnr_logic = "TRELLIS_COMB"
    pnr_ff = "TRELLIS_FF"
    # Yosys' LUT4 count leaves out the LUTs inside other cells (two in each CCU2C carry cell,
    # those of the LUT RAM) and any LUT nextpnr's packer adds; a TRELLIS_COMB is one LUT4
    # site, so nextpnr's count is the LUTs in use.
    luts_counted_by = "nextpnr"

    def nextpnr_device_args(self, target) -> list[str]:
        return [f"--{target.pnr_device}", "--package", target.package, "--speed", target.speed]

    def nextpnr_layout_args(self, constraints: str, placed: str) -> list[str]:
        return ["--lpf", constraints, "--textcfg", placed]

    def constraints(self, pins: dict) -> str:
        lines = []
        for port, pin in pins.items():
            lines.append(f'LOCATE COMP "{port}" SITE "{pin}";')
            lines.append(f'IOBUF PORT "{port}" IO_TYPE=LVCMOS33;')
        return "\n".join(lines) + "\n"

    def cell_counts(self, cells: dict) -> dict:
        return {
            "dsps": cells.get(self.dsp_name, 0),
            "brams": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0),
            "lutram_units": cells.get("TRELLIS_DPR16X4", 0),
            "luts": cells.get("LUT4", 0),
            "ffs": cells.get("TRELLIS_FF", 0),
        }

    def board_options(self) -> dict:
        # Yosys 0.70's synth_ecp5 on Amaranth's RTLIL of the whole board top fails an
        # assertion in abc9 (ABC_OPS_REINTEGRATE, "GetSize(conn.first) ==
        # GetSize(conn.second)"); the core alone, or the same design read as Verilog, passes.
        # Running proc and flatten first avoids it. The same abc9 mistakes a wire named like
        # a bit of another (Amaranth names a view's fields `r_data[1]` beside the whole
        # `r_data`) for that bit: two flip-flops then drive `r_data[1]`'s first bit, which
        # nextpnr refuses ("multiply driven"; the board tops of this project's tests after a
        # change of register resets). Such names are made internal (`rename -hide`) first.
        return {"script_after_read": "proc\nflatten\nrename -hide w:*]"}

    def get_multiplier(self, a_width: int, b_width: int, site: str | None = None):
        if max(a_width, b_width) > 18:
            return None  # Yosys splits wider products over several blocks itself
        return ECP5Multiplier(site)

    def get_registered_memory(self, width: int, depth: int, ram: str = "auto"):
        kind, _ = memory_choice(self.bram, True, depth, width, ram)
        # LUT RAM (or logic) reads fast enough with the caller's fabric register; the 36-bit
        # PDPW16KD mode stays with Yosys' mapping.
        if kind != "block" or block_shape(self.bram, depth, width)[0] == 36:
            return None
        return ECP5BlockRam(width=width, depth=depth)


ECP5 = ECP5Family()
