"""The Lattice ECP5: Yosys ``synth_ecp5``, nextpnr-ecp5, ecppack.

Vendor primitives (the platform hooks of :mod:`.base`):

- multipliers: :class:`ECP5Multiplier`, one MULT18X18D with its A, B and output registers.
  Yosys maps a fabric ``*`` to a MULT18X18D too, but never packs registers into it: the
  block's 3.4-3.9 ns would sit between two fabric registers. Instantiated with its own
  registers it is register to register inside the DSP (0.66 ns clock-to-out), with the same
  two cycles of latency as the fabric registers it replaces.
- memories: none instantiated yet; Yosys maps memories onto DP16KD (always with
  ``REGMODE="NOREG"``: 5.6-5.8 ns clock-to-output) or TRELLIS_DPR16X4 LUT RAM. A DP16KD with
  ``REGMODE="OUTREG"`` (0.94 ns) reads one cycle later than an Amaranth memory does, so it
  cannot silently replace one in :meth:`ECP5Family.get_memory` (that hook must keep the read
  latency of the memory it lowers): it belongs in a hook the memory's owner asks for by name
  and whose latency it declares, as :meth:`ECP5Family.get_multiplier` does.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .base import BlockRam, Family

__all__ = ["ECP5", "ECP5Family", "ECP5Multiplier", "DP16KD"]

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

    def __init__(self):
        super().__init__({"a": In(signed(18)), "b": In(signed(18)), "p": Out(signed(36))})

    def elaborate(self, platform):
        m = Module()
        ports = {f"i_A{i}": self.a[i] for i in range(18)}
        ports.update({f"i_B{i}": self.b[i] for i in range(18)})
        ports.update({f"i_C{i}": 0 for i in range(18)})
        ports.update({f"o_P{i}": self.p[i] for i in range(36)})
        m.submodules.mult = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0", p_CLK0_DIV="ENABLED", p_GSR="DISABLED",
            p_RESETMODE="SYNC",
            i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0,
            i_CLK0=ClockSignal(), i_CE0=1, i_RST0=0, **ports)
        return m


class ECP5Family(Family):
    name = "ecp5"
    dsp_name = "MULT18X18D"
    dsp_width = 18
    dsp_min_product = 0
    bram = DP16KD
    synth = "synth_ecp5"
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
        # Running proc and flatten first avoids it.
        return {"script_after_read": "proc\nflatten"}

    def get_multiplier(self, a_width: int, b_width: int):
        if max(a_width, b_width) > 18:
            return None  # Yosys splits wider products over several blocks itself
        return ECP5Multiplier()


ECP5 = ECP5Family()
