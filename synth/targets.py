"""The FPGA targets of `bbsparse synth`: device limits, pins, default cores, and the fit check.
What the tools do with a target (commands, constraint format, cell names) is its family's,
:mod:`.families`.

Device figures are the vendor data sheets' (iCE40 UltraPlus family data sheet, ECP5 family
data sheet) and the bel counts nextpnr 0.11 reports as "available" for these parts (the
end-to-end tests check the UP5K and the 25k; the 45k and 85k were checked by flow runs).
The UP5K's four 256-kbit SPRAMs are single-port and not used: every memory of the core has
a write port and a read port that work in the same cycle.

The fit check runs before any tool, because Yosys does not check it: it maps every
multiplier to a DSP block and every memory to block RAM however many the device has, and
only nextpnr fails, late and obscurely. It models what Yosys will do:

DSP blocks per multiplier (Yosys ``mul2dsp`` with the ``synth_ice40 -dsp`` / ``synth_ecp5``
settings, measured with Yosys 0.70):

- both operands at most ``dsp_width`` bits (16 for SB_MAC16, 18 for MULT18X18D) and at least
  2, and on the iCE40 a product of at least 11 bits: **one DSP block**;
- an operand of 1 bit, or an iCE40 product narrower than 11 bits: **none** (Yosys builds the
  multiplier from LUTs);
- a wider operand: Yosys splits the multiplier into partial products of ``dsp_width - 1``
  bits (sign headroom), so at most ``ceil(ww / (W-1)) * ceil(aw / (W-1))`` blocks. This is an
  upper bound (partial products below the minimum width go to LUTs); the flow counts the
  real number after Yosys and stops before nextpnr if it does not fit.

Memories (Yosys ``memory_libmap``): each memory goes where Yosys' cost model puts it: soft
logic (1 per bit), LUT RAM (ECP5 TRELLIS_DPR16X4: 4 per 16x4 unit, plus read-mux and
write-demux terms for every extra 16 words, plus a sync-read emulation term) or block RAM
(64 per SB_RAM40_4K, 128 per DP16KD, plus an emulation term), the cheapest winning, a tie
going to the earlier of soft logic, LUT RAM, block RAM. :func:`memory_mapping` reproduces
this for the memories of the core; a test compares it with Yosys on many shapes.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ..golden.config import Config, clog2
from ..hdl.engines import engine_of
from ..hdl.lut_multiplier import LUTMultiplier
from .families import RAM_POLICIES, BlockRam, Family, family_of, memory_choice

__all__ = [
    "TOP_NAME", "TARGETS", "Target", "BlockRam", "FitError", "MemoryUse", "FitReport",
    "dsps_per_multiplier", "memory_mapping", "check_ram_policy", "RAM_POLICIES",
    "core_memories", "fit_check", "require_fit", "target", "lut_estimate",
    "LUTRAM_UNIT_LUTS", "lutram_luts",
]


#: The module name of the synthesis top (:mod:`.top`).
TOP_NAME = "bbs_synth_top"


class FitError(ValueError):
    """A configuration that cannot fit the device; the message names the figure and limit."""


@dataclass(frozen=True)
class Target:
    """One device in one package on one board: its figures and its pins. What the tools do
    with it is its family's (:mod:`.families`)."""
    name: str
    family: Family
    device: str              # vendor part name
    package: str
    board: str               # the board whose pins the constraint file uses
    pnr_device: str          # nextpnr's name for the part (its --up5k, --25k... option)
    luts: int                # LUT4s
    ffs: int
    dsps: int
    bram_blocks: int
    lutram_units: int        # 16x4 LUT-RAM units (TRELLIS_DPR16X4); 0 if the family has none
    freq_mhz: float          # the target's own clock constraint (its goal, DESIGN §12.7)
    pins: dict = field(default_factory=dict)   # top port -> package pin
    speed: str = ""
    #: The core built when no configuration is given (Config keyword arguments; empty: the
    #: default Config).
    default_core: dict = field(default_factory=dict)
    #: Micro-architecture keys a ``--fit`` of this target starts from (DESIGN §12.8): what
    #: its largest fits measured they need. :meth:`fit_base` applies them.
    fit_core: dict = field(default_factory=dict)
    #: What a ``--fit --fit-multipliers mix`` changes over :attr:`fit_core` (DESIGN §12.8).
    fit_core_mix: dict = field(default_factory=dict)
    #: The share of the LUT4s a mix fills at most by the pre-tool estimate (the rest is room
    #: for placement and routing, DESIGN §12.8); None: the flow's ``FIT_LUT_BUDGET``.
    fit_lut_budget: float | None = None
    #: The DSP blocks' sites as nextpnr names them (BELs), for ``--dsp-floorplan``
    #: (:func:`~.families.base.dsp_floorplan`); empty: not known, no floorplan.
    dsp_sites: tuple = ()

    def __post_init__(self):
        if not isinstance(self.family, Family):
            raise TypeError(f"target {self.name}: family must be a Family (see "
                            f"synth/families), not {self.family!r}")

    @property
    def dsp_name(self) -> str:
        """The DSP block's netlist cell."""
        return self.family.dsp_name

    @property
    def dsp_width(self) -> int:
        """The widest signed operand one DSP block multiplies."""
        return self.family.dsp_width

    @property
    def dsp_min_product(self) -> int:
        """Narrower products stay in LUTs (Yosys DSP_Y_MINWIDTH)."""
        return self.family.dsp_min_product

    @property
    def bram(self) -> BlockRam:
        return self.family.bram

    @property
    def bram_bits(self) -> int:
        return self.bram_blocks * self.bram.bits

    @property
    def description(self) -> str:
        speed = f"-{self.speed}" if self.speed else ""
        return f"{self.device}{speed} {self.package} ({self.board})"

    def default_config(self, overrides: dict | None = None) -> Config:
        """The target's default core, with `overrides` (Config keyword arguments) applied
        over its parameters before the derived ones are filled in."""
        return Config(**{**self.default_core, **(overrides or {})})

    def fit_base(self, config: Config, given=(), multipliers: str = "dsp") -> Config:
        """`config` with :attr:`fit_core` applied (and :attr:`fit_core_mix` over it for
        `multipliers` ``"mix"``): each key the engine takes (``lane_choices``) and the
        user did not give (`given`: the keys of ``--set``)."""
        core = {**self.fit_core, **(self.fit_core_mix if multipliers == "mix" else {})}
        keys = {k: v for k, v in core.items()
                if k not in given and k in config.format.lane_choices}
        return Config(**{**config.to_dict(), **keys}) if keys else config

    def constraints(self) -> str:
        """The pin constraint file of the synthesis top, in the family's format."""
        return self.family.constraints(self.pins)

    @property
    def constraints_suffix(self) -> str:
        return self.family.constraints_suffix


# iCEBreaker: 12 MHz clock on 35, user button on 10, FTDI UART RX 6 / TX 9, PMOD1A pin 4.
ICEBREAKER_PINS = {"clk": "35", "rst": "10", "sin": "6", "load": "4", "sout": "9"}
# ULX3S: 25 MHz clock G2, buttons F1 (R1) and F2 (T1), FTDI UART: ftdi_txd M1 into the
# FPGA, ftdi_rxd L4 out of it.
ULX3S_PINS = {"clk": "G2", "rst": "R1", "sin": "M1", "load": "T1", "sout": "L4"}


def _ecp5_dsp_sites(rows, blocks) -> tuple:
    """The MULT18X18D sites of an ECP5 whose DSP rows are `rows` and whose DSP blocks start
    at the columns `blocks`: four multipliers a block, at columns +0, +1, +4, +5 (BELs
    MULT18_0, _1, _4, _5), as nextpnr-ecp5 placed the ECP5-85k's 156."""
    return tuple(f"X{x + offset}/Y{y}/MULT18_{offset}" for y in rows for x in blocks
                 for offset in (0, 1, 4, 5))


def _ecp5(size: str, luts: int, dsps: int, ebrs: int, lutram_units: int,
          freq_mhz: float, *, fit: dict | None = None, mix: dict | None = None,
          mix_lut_budget: float | None = None, dsp_sites: tuple = ()) -> Target:
    """An ECP5 of the ULX3S; `fit` and `mix` change the family's :attr:`Target.fit_core`
    and :attr:`Target.fit_core_mix` for this size (why, where they are given)."""
    return Target(
        name=f"ecp5-{size}", family=family_of("ecp5"), device=f"LFE5U-{size[:-1].upper()}F",
        package="CABGA381", board="ULX3S", pnr_device=size, luts=luts, ffs=luts, dsps=dsps,
        bram_blocks=ebrs, lutram_units=lutram_units, freq_mhz=freq_mhz, pins=ULX3S_PINS,
        speed="6",
        # A fit fills the DSP rows, which lie apart from the block RAM rows and from the
        # fabric its PE's adder tree sits in: every MULT18X18D's output travels far to the
        # tree (4.1-5.5 ns of routing on the 25k and 85k fits), so two fabric registers
        # split that route (45k 8x9 fit, seed 1: 176.0 MHz with one, 187.5 with two); the
        # operands travel far from the vector banks' block RAM (4.2-5.0 ns on the 45k), so
        # one more register splits theirs (45k fit, 3 seeds: 165.2-190.9 MHz before, with
        # the y FIFO of DESIGN §14.3 182.2-190.4); and the broadcasts from the core's
        # control to every PE's vector banks cross the die, so each PE takes them through
        # a register of its own (45k fit, seed 1, with the y FIFO's pointer copies of
        # §14.3: 210.3 MHz; 182.2-182.7 over three seeds before). On the 85k's die one
        # register cannot reach every PE's copy: three make a tree (DESIGN §2.1; 85k fit, 3
        # seeds: 171.4-178.5 MHz, with two 162.2-173.8), and its operands two registers
        # (one operand register was placed 70 rows from its MULT18X18D, 5.0 ns).
        fit_core={"product_registers": 2, "operand_registers": 1, "broadcast_registers": 1,
                  **(fit or {})},
        # A mix fills the fabric with LUT multipliers and its banks go to LUT RAM: flip-flops,
        # not routes to a far block RAM or DSP row, stop it first. No operand register and
        # one broadcast register (each adds a register per multiplier operand, weight and
        # index): the 85k's mix (64 x 5, 164 LUT multipliers) went from 87,821 flip-flops,
        # which nextpnr could not place, to 58,155 with the multiplier stage of DESIGN §2.1.
        # On the 85k's die one register from the x writes' source to 20 lane groups' copies
        # crosses it (6.9 ns of routing): the 85k's mix takes two, the first one for all
        # (seed 1: 137.6 -> 148.2 MHz, 62,365 flip-flops; DESIGN §12.8).
        fit_core_mix={"operand_registers": 0, "broadcast_registers": 1, **(mix or {})},
        fit_lut_budget=mix_lut_budget, dsp_sites=dsp_sites,
    )


TARGETS: dict[str, Target] = {
    "ice40-up5k": Target(
        name="ice40-up5k", family=family_of("ice40"), device="iCE40UP5K", package="SG48",
        board="iCEBreaker", pnr_device="up5k", luts=5280, ffs=5280, dsps=8, bram_blocks=30,
        lutram_units=0, freq_mhz=60.0, pins=ICEBREAKER_PINS,
        # The default core cut to the UP5K's 8 SB_MAC16: 8 lanes x 1 PE (the default 8 x 2
        # needs 16); configs/ice40-up5k.toml holds the same.
        default_core=dict(lanes=8, pes=1),
    ),
    # LUT RAM: TRELLIS_RAMW sites (one 16x4 DPR16X4 each) as nextpnr counts them.
    # freq_mhz: each target's own clock goal, the constraint `bbsparse synth` checks
    # (DESIGN §12.7): 200 MHz on the 25k, 180 on the larger parts, 60 on the UP5K.
    "ecp5-25k": _ecp5("25k", 24288, 28, 56, 3036, 200.0),
    "ecp5-45k": _ecp5("45k", 43848, 72, 108, 5481, 180.0),
    "ecp5-85k": _ecp5("85k", 83640, 156, 208, 10455, 180.0,
                      fit=dict(operand_registers=2, broadcast_registers=3),
                      # The mix's results cross the die from its PEs to the y FIFO (seed
                      # 1 of the 128 x 3: 4.7 ns of routing from a valid's copy to a
                      # slice): two result registers (DESIGN §12.8). With 55 % of the
                      # LUT4s its mix is 128 x 3 (384 multipliers; 64 x 5 within half):
                      # 52 % of the logic cells and 93 % of the flip-flops, routed at
                      # 155.3 MHz (seed 1, 119.3 GOPS; seeds 2-3 139.4, 140.7). The 25k
                      # keeps half: its 55 % (10 x 7) made 153.1 MHz, 64 x 1 226.1.
                      mix=dict(broadcast_registers=2, result_registers=2),
                      mix_lut_budget=0.55,
                      dsp_sites=_ecp5_dsp_sites((10, 34, 58), (4, 13, 22, 31, 40, 49, 58, 69,
                                                               78, 87, 96, 105, 114))),
}


def target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise FitError(f"unknown target {name!r}; known: {', '.join(TARGETS)}") from None


# -- DSP blocks ------------------------------------------------------------------------------


def dsps_per_multiplier(t: Target, weight_width: int, act_width: int) -> tuple[int, bool]:
    """(DSP blocks one signed weight_width x act_width multiplier takes, exact?).

    See the module docstring for the rule; the count is exact unless an operand is wider
    than the DSP block, where it is an upper bound.
    """
    if min(weight_width, act_width) < 2 or weight_width + act_width < t.dsp_min_product:
        return 0, True
    if max(weight_width, act_width) <= t.dsp_width:
        return 1, True
    if not t.family.splits_wide_products:
        return 0, True  # the family's synthesis does not split it over DSP blocks: LUTs
    piece = t.dsp_width - 1
    return math.ceil(weight_width / piece) * math.ceil(act_width / piece), False


# -- memories --------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryUse:
    """Where Yosys will put `count` memories of `depth` x `width` bits, and what they take."""
    role: str
    count: int
    depth: int
    width: int
    kind: str          # "block", "lutram" or "logic"
    units_each: int    # blocks, 16x4 LUT-RAM units, or flip-flops per memory

    @property
    def units(self) -> int:
        return self.count * self.units_each

    @property
    def bits(self) -> int:
        return self.count * self.depth * self.width

    def to_dict(self) -> dict:
        return {"role": self.role, "count": self.count, "depth": self.depth,
                "width": self.width, "maps_to": self.kind, "units_each": self.units_each,
                "units": self.units}


def check_ram_policy(t: Target, ram: str) -> None:
    """FitError unless `t` can follow the ``--ram`` policy `ram`."""
    if ram not in RAM_POLICIES:
        raise FitError(f"--ram must be one of {', '.join(RAM_POLICIES)}, not {ram!r}")
    if ram == "lutram" and not t.lutram_units:
        raise FitError(f"--ram lutram: the {t.device} has no LUT RAM")
    if ram not in t.family.ram_options:
        raise FitError(f"--ram {ram}: the {t.family.name} flow has no such option")


def memory_mapping(t: Target, role: str, count: int, depth: int, width: int,
                   ram: str = "auto") -> MemoryUse:
    """Where Yosys maps `count` one-write, one-sync-read memories of depth x width on `t`.

    `ram` = "lutram" models ``-nobram`` (block RAM is never chosen), "block" models
    ``-nolutram`` (LUT RAM never is); soft logic stays a candidate either way."""
    kind, units = memory_choice(t.bram, bool(t.lutram_units), depth, width, ram)
    return MemoryUse(role, count, depth, width, kind, units)


def core_memories(t: Target, config, ram: str = "auto") -> list[MemoryUse]:
    """Where Yosys puts the memories of the core `config` selects (its engine's
    :meth:`~bbsparse.hdl.engines.Engine.memories`) on `t`.

    With ``lutram_banks`` > 0 the vector banks are placed explicitly (DESIGN §2.1): the
    last ``lutram_banks`` in LUT RAM (``ram_style = "distributed"``), the others in block
    RAM (the family's block-RAM hook, as under ``--ram block``); each group is modelled
    under that policy."""
    uses = []
    for need in engine_of(config).memories(config):
        if need.role == "vector banks" and config.lutram_banks:
            groups = (("block", need.count - config.lutram_banks), ("lutram", config.lutram_banks))
            for policy, count in groups:
                if count:
                    uses.append(memory_mapping(t, f"vector banks ({policy})", count, need.depth,
                                               need.width, policy))
            continue
        uses.append(memory_mapping(t, need.role, need.count, need.depth, need.width, ram))
    return uses


# -- LUTs ------------------------------------------------------------------------------------

#: LUT4 sites one 16x4 LUT-RAM unit (TRELLIS_DPR16X4) takes: its 4 RAM LUTs and the slice
#: of its write port (TRELLIS_RAMW) beside them.
LUTRAM_UNIT_LUTS = 6


def lutram_luts(use: MemoryUse) -> int:
    """LUT4s of the memories `use` describes in LUT RAM: :data:`LUTRAM_UNIT_LUTS` a unit,
    and the read multiplexer over the ``deep = ceil(depth / 16)`` units of a bit and the
    write decoder. Yosys 0.70 ``synth_ecp5`` of one 8-bit memory with ``ram_style =
    "distributed"`` made 0, 10, 56 and 188 LUT4 beside its units for 16, 32, 128 and 256
    words; this gives 0, 10, 64 and 196."""
    if use.kind != "lutram":
        return 0
    deep = -(-use.depth // 16)
    mux = use.width * (deep - 1) * (1.5 if deep > 8 else 1.0)
    decode = deep if deep > 1 else 0
    return use.count * (LUTRAM_UNIT_LUTS * use.units_each + math.ceil(mux) + decode)
#: The core's control, x buffer control and serial wrapper, beside what grows with the
#: array (an allowance, not a measurement of any one configuration).
_CONTROL_LUTS = 1000


def lut_estimate(config) -> dict:
    """An estimate of the LUT4s (nextpnr's logic cells, DESIGN §7.2) the core takes beside
    its LUT RAM, by part:

    - ``lut_multipliers``: ``lut_multipliers`` x :meth:`LUTMultiplier.luts_of` (measured:
      the 8 x 8 one is 121 logic cells on an ECP5, the estimate 120);
    - ``array``: per multiplier its adder-tree adder (product width + 2) and its read-address
      adder (the vector bank's address width); per PE the accumulator and the output stage
      (3 x acc_width) and the serial wrapper's load multiplexer of its y (out_width);
    - ``control``: a fixed allowance.

    LUT RAM comes on top (:func:`lutram_luts`, :attr:`FitReport.luts`)."""
    c = config
    product = c.weight_width + c.act_width
    address = clog2(2 * c.x_beats)
    return {
        "lut_multipliers": c.lut_multipliers * LUTMultiplier.luts_of(c.act_width, c.weight_width),
        "array": c.multipliers * (product + 2 + address) + c.pes * (3 * c.acc_width + c.out_width),
        "control": _CONTROL_LUTS,
    }


# -- the fit check ---------------------------------------------------------------------------


@dataclass
class FitReport:
    target: Target
    multipliers: int
    dsps_each: int
    dsps_exact: bool
    memories: list[MemoryUse]
    #: Of the multipliers, those built from LUTs (``lut_multipliers``): no DSP block.
    lut_multipliers: int = 0
    #: :func:`lut_estimate` of the configuration, by part (LUT RAM not included).
    logic_luts: dict = field(default_factory=dict)

    @property
    def dsp_multipliers(self) -> int:
        return self.multipliers - self.lut_multipliers

    @property
    def dsps(self) -> int:
        return self.dsp_multipliers * self.dsps_each

    @property
    def lutram_luts(self) -> int:
        return sum(lutram_luts(m) for m in self.memories)

    @property
    def luts(self) -> int:
        """The estimated LUT4s in use: logic and LUT RAM."""
        return sum(self.logic_luts.values()) + self.lutram_luts

    def use(self, kind: str) -> int:
        return sum(m.units for m in self.memories if m.kind == kind)

    @property
    def brams(self) -> int:
        return self.use("block")

    @property
    def lutram_units(self) -> int:
        return self.use("lutram")

    def problems(self) -> list[str]:
        """Every limit the configuration breaks, each naming the figure and the limit."""
        t = self.target
        found = []
        if self.dsps > t.dsps:
            rule = ("one each" if self.dsps_exact and self.dsps_each == 1
                    else f"{self.dsps_each} each" + ("" if self.dsps_exact else " (at most)"))
            what = ("multipliers (lanes x pes)" if not self.lut_multipliers else
                    f"DSP multipliers (lanes x pes - lut_multipliers {self.lut_multipliers})")
            found.append(
                f"{self.dsp_multipliers} {what} need {self.dsps} {t.dsp_name} DSP "
                f"blocks ({rule}); the {t.device} has {t.dsps}")
        if self.logic_luts and self.luts > t.luts:
            parts = ", ".join(f"{name.replace('_', ' ')} {value}"
                              for name, value in self.logic_luts.items())
            found.append(
                f"the logic needs about {self.luts} LUT4s (estimate: {parts}, LUT RAM "
                f"{self.lutram_luts}); the {t.device} has {t.luts}")
        if self.brams > t.bram_blocks:
            parts = ", ".join(
                f"{m.role}: {m.count} x {m.depth} words x {m.width} bits = {m.units} "
                f"({m.units_each} each)" for m in self.memories if m.kind == "block")
            found.append(
                f"the memories need {self.brams} {t.bram.name} blocks ({parts}); the "
                f"{t.device} has {t.bram_blocks} ({t.bram_bits // 1024} kbit)")
        if self.lutram_units > t.lutram_units:
            units = Counter()
            for m in self.memories:
                if m.kind == "lutram":
                    units[m.role] += m.units  # a role's memories of several widths, once
            parts = ", ".join(f"{role}: {count}" for role, count in units.items())
            found.append(
                f"the memories need {self.lutram_units} 16x4 LUT-RAM units ({parts}); the "
                f"{t.device} has {t.lutram_units}")
        return found

    def refusal(self) -> str | None:
        """Why the configuration does not fit, naming every problem; None if it fits."""
        problems = self.problems()
        if not problems:
            return None
        t = self.target
        return f"does not fit the {t.name} ({t.device}): " + "; ".join(problems)

    def summary(self) -> str:
        t = self.target
        parts = [f"{self.dsps}/{t.dsps} {t.dsp_name}",
                 f"{self.brams}/{t.bram_blocks} {t.bram.name}"]
        if t.lutram_units:
            parts.append(f"{self.lutram_units}/{t.lutram_units} LUT-RAM units")
        if self.lut_multipliers:
            parts.append(f"{self.lut_multipliers} LUT multipliers")
        if self.logic_luts:
            parts.append(f"about {self.luts}/{t.luts} LUT4")
        # A role of several widths (the y FIFO's slices) once per kind.
        where = "; ".join(dict.fromkeys(f"{m.role} -> {m.kind}" for m in self.memories))
        return ", ".join(parts) + f" ({where})"

    def _weight_memory(self) -> dict:
        """The weight memories among the memories (a board's, a compiled model's ROM)."""
        weights = [m for m in self.memories if m.role.startswith("weight")]
        if not weights:
            return {"weight_memory_bits": 0,
                    "weight_memory_note": "weights stream in on s_axis_w; the core stores none"}
        return {"weight_memory_bits": sum(m.bits for m in weights),
                "weight_memory_note": ", ".join(m.role for m in weights)}

    def to_dict(self) -> dict:
        t = self.target
        return {
            "multipliers": self.multipliers,
            "dsp_multipliers": self.dsp_multipliers,
            "lut_multipliers": self.lut_multipliers,
            "dsps_per_multiplier": self.dsps_each,
            "dsps_per_multiplier_exact": self.dsps_exact,
            "dsps": {"needed": self.dsps, "available": t.dsps, "cell": t.dsp_name},
            "bram": {"needed": self.brams, "available": t.bram_blocks, "cell": t.bram.name},
            "lutram_units": {"needed": self.lutram_units, "available": t.lutram_units},
            "luts_estimate": {"needed": self.luts, "available": t.luts,
                              "parts": {**self.logic_luts, "lutram": self.lutram_luts}},
            **self._weight_memory(),
            "memories": [m.to_dict() for m in self.memories],
            "fits": not self.problems(),
        }


def fit_check(t: Target, config, ram: str = "auto", extra=()) -> FitReport:
    """The pre-tool model of what `config` takes on `t` (no tool is run). `extra` are
    memories beside the core's (:class:`~bbsparse.hdl.engines.MemoryNeed`: the board's
    weight memory and buffers, DESIGN §12.6), placed by the same model."""
    check_ram_policy(t, ram)
    if config.lutram_banks:
        if not t.lutram_units:
            raise FitError(f"lutram_banks = {config.lutram_banks}: the {t.device} has no LUT RAM")
        if ram != "auto":
            raise FitError(f"lutram_banks = {config.lutram_banks} places the vector banks "
                           f"itself: it needs --ram auto, not --ram {ram}")
    each, exact = dsps_per_multiplier(t, config.weight_width, config.act_width)
    memories = core_memories(t, config, ram) + [
        memory_mapping(t, need.role, need.count, need.depth, need.width, ram) for need in extra]
    return FitReport(t, config.multipliers, each, exact, memories,
                     lut_multipliers=config.lut_multipliers, logic_luts=lut_estimate(config))


def require_fit(t: Target, config, ram: str = "auto", extra=()) -> FitReport:
    """:func:`fit_check`, raising :class:`FitError` with every problem if it does not fit."""
    report = fit_check(t, config, ram, extra)
    refusal = report.refusal()
    if refusal:
        raise FitError(refusal)
    return report
