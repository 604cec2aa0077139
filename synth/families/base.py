"""The generic description of an FPGA family (:class:`Family`) and the platform hooks it
answers (:class:`PlatformHooks`); see the package docstring."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ...hdl.pipeline import COPY_ATTRIBUTE

__all__ = ["KEEP_COPIES", "BlockRam", "Family", "figure", "RAM_POLICIES", "PlatformHooks",
           "FamilyPlatform", "with_hooks", "register", "memory_choice", "block_shape"]


#: Yosys commands every flow runs between reading the design and the family's synthesis
#: command, so that register duplication survives (:func:`bbsparse.hdl.pipeline.copy`):
#: ``proc`` makes the flip-flops, and each one driving a wire marked
#: :data:`~bbsparse.hdl.pipeline.COPY_ATTRIBUTE` is kept (``opt_merge`` would otherwise
#: make all copies of a signal one register again).
KEEP_COPIES = ("proc\n"
               f"setattr -set keep 1 a:{COPY_ATTRIBUTE} %ci1:+$dff[Q] a:{COPY_ATTRIBUTE} %d\n")

#: Memory placement policies of ``bbsparse synth --ram`` (:meth:`Family.synth_command`).
RAM_POLICIES = ("auto", "lutram", "block")


@dataclass(frozen=True)
class BlockRam:
    """One block RAM primitive as Yosys maps a one-write, one-read-port memory onto it."""
    name: str
    bits: int
    #: (data width, depth) of each aspect ratio usable with one write and one read port.
    shapes: tuple[tuple[int, int], ...]
    #: Yosys' cost of one block (``cost`` in its memory library file).
    cost: int


# Yosys memory_libmap weights (passes/memory/memory_libmap.cc) and the emulation scores it
# gives the core's memories (a synchronous read port with enable, no transparency), read
# from its debug output for SB_RAM40_4K, DP16KD/PDPW16KD and TRELLIS_DPR16X4.
_FACTOR_MUX = 0.5
_FACTOR_DEMUX = 0.5
_FACTOR_EMU = 2
_BLOCK_EMU_SCORE = 7
_LUTRAM_EMU_SCORE = 1
_LUTRAM_COST = 4


def _block_option(bram: BlockRam, depth: int, width: int) -> tuple[float, int, tuple[int, int]]:
    best = None
    for shape in bram.shapes:
        shape_width, shape_depth = shape
        across = math.ceil(width / shape_width)
        deep = math.ceil(depth / shape_depth)
        blocks = across * deep
        cost = bram.cost * blocks + _FACTOR_EMU * _BLOCK_EMU_SCORE
        if deep > 1:
            cost += _FACTOR_MUX * (deep - 1) * width + _FACTOR_DEMUX * deep
        if best is None or cost < best[0]:
            best = (cost, blocks, shape)
    return best


def _lutram_option(depth: int, width: int) -> tuple[float, int]:
    deep = math.ceil(depth / 16)
    units = deep * math.ceil(width / 4)
    cost = _LUTRAM_COST * units + _FACTOR_EMU * _LUTRAM_EMU_SCORE
    if deep > 1:
        cost += _FACTOR_MUX * (deep - 1) * width + _FACTOR_DEMUX * deep
    return cost, units


def memory_choice(bram: BlockRam, has_lutram: bool, depth: int, width: int,
                  ram: str = "auto") -> tuple[str, int]:
    """Where Yosys maps a one-write, one-sync-read memory of depth x width: ``(kind, units)``,
    kind ``"block"`` (units: blocks of `bram`), ``"lutram"`` (16x4 LUT-RAM units) or
    ``"logic"`` (flip-flops), by Yosys' own costs. `ram` = "lutram" models ``-nobram``
    (block RAM is never chosen), "block" models ``-nolutram`` (LUT RAM never is); soft logic
    stays a candidate either way. A family's memory hook that instantiates block RAM asks
    this too, so the fit check and the netlist agree."""
    kind, units, best = "logic", depth * width, float(depth * width)
    if has_lutram and ram != "block":
        cost, lutram_units = _lutram_option(depth, width)
        if cost < best:
            kind, units, best = "lutram", lutram_units, cost
    if ram != "lutram":
        cost, blocks, _ = _block_option(bram, depth, width)
        if cost < best:
            kind, units, best = "block", blocks, cost
    return kind, units


def block_shape(bram: BlockRam, depth: int, width: int) -> tuple[int, int]:
    """The (width, depth) aspect of `bram` Yosys would build a depth x width memory from."""
    return _block_option(bram, depth, width)[2]


def figure(used, available) -> dict:
    """One resource figure of the report: used, available, percent."""
    return {"used": used, "available": available,
            "percent": round(100.0 * used / available, 1) if available else None}


class Family:
    """The generic description of an FPGA family; each module of this package subclasses it
    once, and :data:`FAMILIES` holds one instance of each (checked by :func:`register`)."""

    #: The family's name, as the targets and the report name it.
    name: str = ""
    #: The hard multiplier: the netlist cell, its widest signed operand, and the narrowest
    #: product Yosys puts into it (narrower ones stay in LUTs: its DSP_Y_MINWIDTH).
    dsp_name: str = ""
    dsp_width: int = 0
    dsp_min_product: int = 0
    #: Whether the synthesis command splits a product wider than one block over several
    #: (Yosys' mul2dsp); if not, such a product goes to LUTs.
    splits_wide_products: bool = True
    #: The block RAM primitive Yosys maps the core's memories onto.
    bram: BlockRam | None = None
    #: The Yosys synthesis command, without -top / -json, and what each --ram policy adds.
    synth: str = ""
    ram_options: dict[str, str] = {}
    #: Yosys commands every flow of the family runs after :data:`KEEP_COPIES`, before the
    #: synthesis command (:meth:`pre_synth_script`).
    synth_prelude: str = ""
    #: The tools, by their upstream names (run as their YoWASP builds, :mod:`..tools`).
    nextpnr: str = ""
    packer: str = ""
    #: The constraint file, nextpnr's placed design, and the bitstream.
    constraints_suffix: str = ""
    placed_suffix: str = ""
    bitstream_suffix: str = ""
    #: nextpnr ``utilization`` keys of the report's figures; None if the family has none.
    pnr_dsp: str | None = None
    pnr_bram: str | None = None
    pnr_lutram: str | None = None
    pnr_logic: str | None = None
    pnr_ff: str | None = None
    #: Which count is the report's ``luts`` (the fabric's LUT4s in use, whatever they hold):
    #: ``"yosys"`` (the netlist's LUT4 cells) or ``"nextpnr"`` (its placed logic cells), as
    #: the family's logic cell makes one or the other the honest figure (DESIGN §7.2).
    luts_counted_by: str = ""

    def synth_command(self, ram: str = "auto") -> str:
        """The Yosys command for a --ram policy (validated by the target's fit check)."""
        try:
            return self.synth + self.ram_options[ram]
        except KeyError:
            raise ValueError(f"the {self.name} family has no --ram {ram}; it takes "
                             f"{', '.join(self.ram_options)}") from None

    def pre_synth_script(self) -> str:
        """What every flow runs between reading the design and :meth:`synth_command`:
        :data:`KEEP_COPIES`, then the family's :attr:`synth_prelude`."""
        return KEEP_COPIES + self.synth_prelude

    def nextpnr_device_args(self, target) -> list[str]:
        """nextpnr's options selecting `target`'s part, package and speed grade."""
        raise NotImplementedError

    def nextpnr_layout_args(self, constraints: str, placed: str) -> list[str]:
        """nextpnr's options naming the constraint file it reads and the placed and routed
        design it writes (the packer's input)."""
        raise NotImplementedError

    def constraints(self, pins: dict) -> str:
        """The pin constraint file for ``{top port: package pin}``."""
        raise NotImplementedError

    def cell_counts(self, cells: dict) -> dict:
        """LUTs, flip-flops, block RAMs, LUT-RAM units and DSP blocks of a netlist, from
        Yosys' ``stat -json`` cell counts by type (``luts``: the LUT4 cells only)."""
        raise NotImplementedError

    def logic_resources(self, target, cells: dict, pnr: dict) -> dict:
        """The report's logic figures (DESIGN §7.2, §11.3), each ``{used, available,
        percent, counted_by}``, from the Yosys cell counts (:meth:`cell_counts`) and
        nextpnr's utilisation:

        - ``lut4``: the LUT4 cells of Yosys' netlist;
        - ``logic_cells``: the logic cells nextpnr placed (:attr:`pnr_logic`, named in
          ``cell``): one LUT4 with its carry / mux / RAM share on the ECP5 (TRELLIS_COMB),
          one LUT4 and one flip-flop, either or both used, on the iCE40 (ICESTORM_LC);
        - ``ffs``: the flip-flop cells of Yosys' netlist;
        - ``luts``: the fabric's LUT4s in use, whatever they hold (logic, carry, LUT RAM):
          ``lut4`` or ``logic_cells`` as :attr:`luts_counted_by` says.
        """
        placed = pnr["logic"]
        lut4 = {**figure(cells["luts"], target.luts), "counted_by": "yosys"}
        logic_cells = {**figure(placed["used"], placed["available"]), "counted_by": "nextpnr",
                       "cell": self.pnr_logic}
        ffs = {**figure(cells["ffs"], target.ffs), "counted_by": "yosys"}
        source = {"yosys": lut4, "nextpnr": logic_cells}[self.luts_counted_by]
        luts = {key: source[key] for key in ("used", "available", "percent", "counted_by")}
        return {"luts": luts, "lut4": lut4, "logic_cells": logic_cells, "ffs": ffs}

    def board_options(self) -> dict:
        """Build options for an amaranth-boards platform of this family (`bbsparse board`)."""
        return {}

    # -- platform hooks (see the module docstring) --

    def get_multiplier(self, a_width: int, b_width: int, site: str | None = None):
        return None

    def get_memory(self, memory):
        return None

    def get_registered_memory(self, width: int, depth: int, ram: str = "auto"):
        return None

    def __repr__(self):
        return f"<{self.name} family>"


def register(*families: Family) -> dict[str, Family]:
    """The registry, each family checked once for the parts of the description it owes."""
    registry = {}
    for family in families:
        missing = [key for key in ("name", "dsp_name", "dsp_width", "bram", "synth", "nextpnr",
                                   "packer", "constraints_suffix", "placed_suffix",
                                   "bitstream_suffix", "pnr_dsp", "pnr_bram", "pnr_logic")
                   if not getattr(family, key)]
        if missing:
            raise TypeError(f"{type(family).__name__} does not define {', '.join(missing)}")
        if family.luts_counted_by not in ("yosys", "nextpnr"):
            raise TypeError(f"{type(family).__name__}.luts_counted_by must be 'yosys' or "
                            f"'nextpnr', not {family.luts_counted_by!r}")
        if not {"auto", "block"} <= set(family.ram_options) <= set(RAM_POLICIES):
            raise TypeError(f"{type(family).__name__}.ram_options must cover 'auto' and "
                            f"'block' within {RAM_POLICIES}, not {sorted(family.ram_options)}")
        registry[family.name] = family
    return registry


# -- the platform hooks ------------------------------------------------------------------------


_SITE = re.compile(r"^X(\d+)/Y(\d+)/\w+$")


def dsp_floorplan(sites, counts) -> list[list]:
    """Which of the DSP `sites` (nextpnr BEL names ``X<x>/Y<y>/<bel>``) each hard multiplier
    takes: ``counts[g]`` multipliers in group ``g`` (a PE's), in order. Each group takes the
    next ``counts[g]`` sites from the left, column by column (so a PE's DSP blocks lie in one
    band of columns over every DSP row, not spread over the die), and hands them to its
    multipliers row by row, left to right (so neighbouring lanes, which the adder tree adds
    first, are neighbouring blocks) (DESIGN §12.8). Without sites every multiplier's site is
    None: the placer's choice. More multipliers than sites is refused (ValueError): a
    floorplan asked for is never silently dropped."""
    counts = list(counts)
    if not sites:
        return [[None] * count for count in counts]
    if sum(counts) > len(sites):
        raise ValueError(f"a DSP floorplan of {len(sites)} sites cannot place "
                         f"{sum(counts)} hard multipliers")
    located = []
    for site in sites:
        match = _SITE.match(site)
        if not match:
            raise ValueError(f"a DSP site must be named X<x>/Y<y>/<bel>, not {site!r}")
        located.append((int(match[1]), int(match[2]), site))
    located.sort()
    plan, start = [], 0
    for count in counts:
        band = sorted(located[start:start + count], key=lambda s: (s[1], s[0]))
        plan.append([site for _, _, site in band])
        start += count
    return plan


class PlatformHooks:
    """The hooks a block asks its platform for (module docstring), answered by the family in
    :attr:`fpga_family`. Mixed into :class:`FamilyPlatform` and into amaranth-boards
    platforms (:func:`with_hooks`); ``fpga_family`` because Amaranth's own vendor platforms
    already have a ``family`` attribute (a string)."""

    fpga_family: Family
    #: The ``--ram`` policy the vendor memories follow (that of the Yosys run after them).
    ram: str = "auto"
    #: The device's DSP sites (nextpnr's BEL names) the hard multipliers are placed at
    #: (:func:`dsp_floorplan`); empty: wherever the placer puts them.
    dsp_sites: tuple = ()

    def get_multiplier(self, a_width: int, b_width: int, site: str | None = None):
        return self.fpga_family.get_multiplier(a_width, b_width, site)

    def multiplier_sites(self, counts) -> list[list]:
        """Per group of hard multipliers (a PE's, `counts` of them each), the site of each
        (:func:`dsp_floorplan`), or None for each when the platform has no sites."""
        return dsp_floorplan(self.dsp_sites, counts)

    def get_registered_memory(self, width: int, depth: int, ram: str | None = None):
        # `ram`: a memory's own placement (VectorBanks' "block"), over the flow's policy.
        return self.fpga_family.get_registered_memory(width, depth,
                                                      self.ram if ram is None else ram)

    def get_memory(self, memory):
        vendor = self.fpga_family.get_memory(memory)
        if vendor is not None:
            return vendor
        # Without a platform, Memory.elaborate builds Amaranth's own memory instance: the
        # netlist is exactly the one of a platform without this hook.
        return memory.elaborate(None)


class FamilyPlatform(PlatformHooks):
    """What `bbsparse synth` elaborates the design with: the hooks of `family` and nothing
    else of an Amaranth platform (no resources, no get_ff_sync...), so every other library
    component elaborates as without a platform."""

    def __init__(self, family: Family, target=None, ram: str = "auto", dsp_sites=()):
        if not isinstance(family, Family):
            raise TypeError(f"family must be a Family, not {family!r}")
        if ram not in RAM_POLICIES:
            raise ValueError(f"ram must be one of {', '.join(RAM_POLICIES)}, not {ram!r}")
        self.fpga_family = family
        self.target = target
        self.ram = ram
        self.dsp_sites = tuple(dsp_sites)

    def __repr__(self):
        what = self.target.name if self.target is not None else self.fpga_family.name
        return f"FamilyPlatform({what})"


def with_hooks(platform_class: type, family: Family) -> type:
    """`platform_class` (an Amaranth platform, such as an amaranth-boards board) with the
    hooks of `family`."""
    return type(platform_class.__name__, (PlatformHooks, platform_class),
                {"fpga_family": family, "__module__": __name__})
