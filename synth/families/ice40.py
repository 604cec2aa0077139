"""The Lattice iCE40 (UltraPlus): Yosys ``synth_ice40 -dsp``, nextpnr-ice40, icepack.

Vendor primitives (the platform hooks of :mod:`.base`):

- multipliers: none instantiated. ``synth_ice40 -dsp`` packs a signed product between two
  registers into one SB_MAC16 with its input and output registers enabled, so the PE's
  fabric ``*`` already becomes a fully registered DSP block (check the cell parameters after
  a change: nextpnr has no timing model for SB_MAC16, so an unregistered one would not show
  in Fmax).
- memories: none instantiated; Yosys maps the core's one-write, one-read-port memories onto
  SB_RAM40_4K. The UP5K's four SB_SPRAM256KA (256 kbit each, single-port: a read and a write
  cannot share a cycle) would be answered here by :meth:`ICE40Family.get_memory`, for a
  memory that never reads and writes in the same cycle; none of the core's is such a memory.
"""

from __future__ import annotations

from .base import BlockRam, Family

__all__ = ["ICE40", "ICE40Family", "SB_RAM40_4K"]

SB_RAM40_4K = BlockRam("SB_RAM40_4K", 4096, ((16, 256), (8, 512), (4, 1024), (2, 2048)), 64)


class ICE40Family(Family):
    name = "ice40"
    dsp_name = "SB_MAC16"
    dsp_width = 16
    dsp_min_product = 11
    bram = SB_RAM40_4K
    # -dsp: without it synth_ice40 uses no SB_MAC16 at all.
    synth = "synth_ice40 -dsp"
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
        # Amaranth's iCE40 platform runs synth_ice40 without -dsp: no SB_MAC16 without it.
        return {"synth_opts": "-dsp"}


ICE40 = ICE40Family()
