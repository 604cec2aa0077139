"""The Lattice iCE40 (UltraPlus): Yosys ``synth_ice40 -dsp``, nextpnr-ice40, icepack.

Vendor primitives (the platform hooks of :mod:`.base`):

- multipliers: :class:`ICE40Multiplier`, one SB_MAC16 with its A and B input registers and
  its 16 x 16 product register (``PIPELINE_16x16_MULT_REG2``), on the output. ``synth_ice40
  -dsp`` packs a fabric ``*`` into an SB_MAC16 but never its registers when they have a
  synchronous reset (Amaranth's do), and nextpnr has no timing model for SB_MAC16, so an
  unregistered block would not show in Fmax. :meth:`ICE40Family.dsp_register_check` reads
  every SB_MAC16's parameters in the netlist after Yosys and names those whose inputs or
  outputs are not registered (DESIGN §12.4).
- memories: none instantiated; Yosys maps the core's one-write, one-read-port memories onto
  SB_RAM40_4K. The UP5K's four SB_SPRAM256KA (256 kbit each, single-port: a read and a write
  cannot share a cycle) would be answered here by :meth:`ICE40Family.get_memory`, for a
  memory that never reads and writes in the same cycle; none of the core's is such a memory.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .base import BlockRam, Family

__all__ = ["ICE40", "ICE40Family", "ICE40Multiplier", "SB_RAM40_4K", "sb_mac16_registers",
           "SB_MAC16_TIMING"]

SB_RAM40_4K = BlockRam("SB_RAM40_4K", 4096, ((16, 256), (8, 512), (4, 1024), (2, 2048)), 64)


#: What bounds an SB_MAC16 that nextpnr does not time: icestorm's vendor timing data for the
#: UP5K (``timings_up5k.txt``), in ns.
SB_MAC16_TIMING = {
    "unregistered_16x16_multiply_ns": 8.88,
    "pipelined_clock_to_out_ns": 2.0,
    "source": "icestorm timings_up5k.txt (Lattice iCEcube2 timing data for the UP5K)",
}


def _param(cell: dict, name: str) -> int:
    """A cell parameter as an integer (Yosys' JSON writes constants as binary strings)."""
    value = cell.get("parameters", {}).get(name, 0)
    if isinstance(value, str):
        digits = value.strip()
        return int(digits, 2) if digits and set(digits) <= {"0", "1"} else 0
    return int(value)


def _driven(bits) -> bool:
    """True if any bit of a port connects to a net (not a constant "0", "1", "x", "z")."""
    return any(isinstance(bit, int) for bit in bits or ())


def sb_mac16_registers(name: str, cell: dict) -> dict:
    """Which registers one SB_MAC16 of a Yosys JSON netlist uses on the paths in and out of
    it (Lattice TN1295 "DSP Function Usage Guide for iCE40 Devices"; Yosys'
    techlibs/ice40/cells_sim.v):

    - each data input connected to a net (A, B, C, D) needs its input register (A_REG,
      B_REG, C_REG, D_REG);
    - each output half in use (O[31:16] top, O[15:0] bottom) needs a register at the
      output it selects: TOPOUTPUT_SELECT / BOTOUTPUT_SELECT 0 is the adder's unregistered
      output, 1 the accumulator register, 2 the 8x8 product (TOP_8x8_MULT_REG /
      BOT_8x8_MULT_REG), 3 the 16x16 product (PIPELINE_16x16_MULT_REG2).

    ``{cell, registered, missing: [...], inputs, outputs, parameters}``; `missing` names each
    missing register and the port it leaves unregistered."""
    conns = cell.get("connections", {})
    missing, inputs, outputs = [], [], []
    for port in ("A", "B", "C", "D"):
        if _driven(conns.get(port)):
            inputs.append(port)
            if not _param(cell, f"{port}_REG"):
                missing.append(f"{port}_REG=0: input {port} is not registered")
    o = list(conns.get("O") or ())
    found = {}  # what is missing -> the output halves it concerns
    for half, bits, select_name, mult8 in (("top", o[16:32], "TOPOUTPUT_SELECT",
                                            "TOP_8x8_MULT_REG"),
                                           ("bottom", o[0:16], "BOTOUTPUT_SELECT",
                                            "BOT_8x8_MULT_REG")):
        if not _driven(bits):
            continue
        outputs.append(half)
        select = _param(cell, select_name)
        if select == 0:
            what = f"{select_name}=0: output {{}} is the adder's unregistered output"
        elif select == 2 and not _param(cell, mult8):
            what = f"{mult8}=0: output {{}} is the unregistered 8x8 product"
        elif select == 3 and not _param(cell, "PIPELINE_16x16_MULT_REG2"):
            what = "PIPELINE_16x16_MULT_REG2=0: output {} is the unregistered 16x16 product"
            if _param(cell, "PIPELINE_16x16_MULT_REG1"):
                what += " (REG1 registers the partial products; their adder is not)"
        else:
            continue
        found.setdefault(what, []).append(half)
    for what, halves in found.items():
        span = {("top",): "O[31:16]", ("bottom",): "O[15:0]"}.get(tuple(halves), "O[31:0]")
        missing.append(what.format(span))
    keys = ("A_REG", "B_REG", "C_REG", "D_REG", "TOP_8x8_MULT_REG", "BOT_8x8_MULT_REG",
            "PIPELINE_16x16_MULT_REG1", "PIPELINE_16x16_MULT_REG2", "TOPOUTPUT_SELECT",
            "BOTOUTPUT_SELECT", "MODE_8x8")
    return {"cell": name.lstrip("\\"), "registered": not missing, "missing": missing,
            "inputs": inputs, "outputs": outputs,
            "parameters": {key: _param(cell, key) for key in keys}}


class ICE40Multiplier(wiring.Component):
    """p = a * b (signed 16 x 16) in one SB_MAC16 with its A and B input registers and its
    product register, all on the ``sync`` clock (Lattice TN1295, "DSP Function Usage Guide
    for iCE40 Devices": ``A_REG``, ``B_REG``, ``PIPELINE_16x16_MULT_REG2``, both output
    halves selecting the registered product).

    Ports: ``a``, ``b`` : In(signed(16)); ``p`` : Out(signed(32)). Latency 2: ``p`` is the
    product of the ``a`` and ``b`` of two clock edges earlier; one product per cycle. The
    multiply between the block's registers is not timed by nextpnr (vendor figure: 8.88 ns,
    :data:`SB_MAC16_TIMING`).
    """

    latency = 2

    def __init__(self):
        super().__init__({"a": In(signed(16)), "b": In(signed(16)), "p": Out(signed(32))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = Instance(
            "SB_MAC16",
            p_NEG_TRIGGER=0, p_C_REG=0, p_A_REG=1, p_B_REG=1, p_D_REG=0,
            p_TOP_8x8_MULT_REG=0, p_BOT_8x8_MULT_REG=0,
            p_PIPELINE_16x16_MULT_REG1=0, p_PIPELINE_16x16_MULT_REG2=1,
            # Output select 3: the 16 x 16 product (after REG2) on both halves.
            p_TOPOUTPUT_SELECT=3, p_TOPADDSUB_LOWERINPUT=0, p_TOPADDSUB_UPPERINPUT=0,
            p_TOPADDSUB_CARRYSELECT=0, p_BOTOUTPUT_SELECT=3, p_BOTADDSUB_LOWERINPUT=0,
            p_BOTADDSUB_UPPERINPUT=0, p_BOTADDSUB_CARRYSELECT=0, p_MODE_8x8=0,
            p_A_SIGNED=1, p_B_SIGNED=1,
            i_CLK=ClockSignal(), i_CE=1, i_A=self.a, i_B=self.b, i_C=0, i_D=0,
            i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0, i_IRSTTOP=0, i_IRSTBOT=0,
            i_ORSTTOP=0, i_ORSTBOT=0, i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0,
            i_ADDSUBBOT=0, i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
            o_O=self.p)
        return m


class ICE40Family(Family):
    name = "ice40"
    dsp_name = "SB_MAC16"
    dsp_width = 16
    dsp_min_product = 11
    bram = SB_RAM40_4K
    # No -dsp: the core's multipliers are SB_MAC16 instances with their registers
    # (get_multiplier), and Yosys 0.70's ice40_dsp pass, which -dsp runs, rewrites an
    # instantiated SB_MAC16's register parameters from the fabric registers it finds around
    # the block (none): every register off and CLK tied to 0. A product wider than the
    # hook takes stays a fabric `*` and goes to LUTs, which the DSP count check after Yosys
    # reports (DESIGN §12.4).
    synth = "synth_ice40"
    # Without -dsp no product wider than the hook takes goes to SB_MAC16s.
    splits_wide_products = False
    # synth_ice40 has no LUT RAM to avoid: its only choices are block RAM and logic.
    ram_options = {"auto": "", "block": ""}
    nextpnr = "nextpnr-ice40"
    packer = "icepack"
    constraints_suffix = ".pcf"
    placed_suffix = ".asc"
    bitstream_suffix = ".bin"
    pnr_dsp = "ICESTORM_DSP"
    pnr_bram = "ICESTORM_RAM"
    pnr_logic = "ICESTORM_LC"
    # A logic cell (ICESTORM_LC) is a LUT4 and a flip-flop, either or both used, so nextpnr's
    # count mixes LUTs with flip-flop-only cells; Yosys' SB_LUT4 count is the LUTs in use
    # (carries are SB_CARRY cells beside their LUT).
    luts_counted_by = "yosys"

    def nextpnr_device_args(self, target) -> list[str]:
        return [f"--{target.pnr_device}", "--package", target.package.lower()]

    def nextpnr_layout_args(self, constraints: str, placed: str) -> list[str]:
        return ["--pcf", constraints, "--asc", placed]

    def constraints(self, pins: dict) -> str:
        return "".join(f"set_io {port} {pin}\n" for port, pin in pins.items())

    def cell_counts(self, cells: dict) -> dict:
        return {
            "dsps": cells.get(self.dsp_name, 0),
            "brams": cells.get(self.bram.name, 0),
            "lutram_units": 0,
            "luts": cells.get("SB_LUT4", 0),
            "ffs": sum(n for cell, n in cells.items() if cell.startswith("SB_DFF")),
        }

    def board_options(self) -> dict:
        # Amaranth's iCE40 platform runs synth_ice40 without -dsp, as the flow does (the
        # SB_MAC16 blocks are instantiated by get_multiplier).
        return {}

    def get_multiplier(self, a_width: int, b_width: int, site: str | None = None):
        # No floorplan on the iCE40 (no target lists its SB_MAC16 sites): `site` unused.
        # As the fit check counts (DESIGN §12.2): a product narrower than dsp_min_product
        # bits, or with a 1-bit operand, stays in LUTs, as does one wider than the block.
        if (max(a_width, b_width) > self.dsp_width or min(a_width, b_width) < 2
                or a_width + b_width < self.dsp_min_product):
            return None
        return ICE40Multiplier()

    def dsp_register_check(self, netlist: dict) -> dict:
        """Every SB_MAC16 of a Yosys JSON netlist (``write_json``) checked for its input and
        output registers (:func:`sb_mac16_registers`): nextpnr-ice40 has no timing model
        for SB_MAC16 (each port is a register to it, with a 100 ps placeholder), so the
        Fmax it reports covers a DSP block only if the block is registered on both sides.
        ``{checked, cell, all_registered, registered, total, cells, bound}``."""
        cells = [sb_mac16_registers(name, cell)
                 for module in netlist.get("modules", {}).values()
                 for name, cell in module.get("cells", {}).items()
                 if cell.get("type") == self.dsp_name]
        cells.sort(key=lambda c: c["cell"])
        timing = SB_MAC16_TIMING
        multiply = timing["unregistered_16x16_multiply_ns"]
        return {
            "checked": True,
            "cell": self.dsp_name,
            "all_registered": all(c["registered"] for c in cells),
            "registered": sum(c["registered"] for c in cells),
            "total": len(cells),
            "cells": cells,
            "bound": {
                **timing,
                # Between its input and output registers the multiply is inside the block,
                # untimed too: the unregistered multiply's delay bounds that path.
                "registered_block_limit_mhz": round(1000 / multiply, 1),
                "note": f"nextpnr-ice40 has no SB_MAC16 timing (a 0.1 ns placeholder "
                        f"per port); vendor figures: an unregistered 16x16 multiply takes "
                        f"{multiply} ns, a fully pipelined block about "
                        f"{timing['pipelined_clock_to_out_ns']} ns clock-to-out. The Fmax "
                        f"is honest only with every SB_MAC16 registered on both sides, and "
                        f"then up to {1000 / multiply:.0f} MHz (the multiply between the "
                        f"block's own registers), less the clock-to-out nextpnr leaves out "
                        f"of the paths the blocks drive",
            },
        }


ICE40 = ICE40Family()
