"""A processing element: `lanes` multipliers, a pipelined adder tree, an accumulator."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .adder_tree import AdderTree
from .lut_multiplier import LUTMultiplier
from .pipeline import copy, copy_flag, delay, require_positive

__all__ = ["PE"]


class PE(wiring.Component):
    """Multiply `lanes` (activation, weight) pairs per cycle and accumulate them into a row.

    Ports
    -----
    x : In(ArrayLayout(signed(act_width), lanes))
        The activation each lane gathered from its own vector-memory bank.
    weight : In(ArrayLayout(signed(weight_width), lanes))
    valid, first, last : In(1)
        `valid` marks a beat; `first` / `last` mark the first / last beat of a row.
    acc : Out(signed(acc_width))
        The row's dot product, wrapped modulo ``2**acc_width``; valid while `acc_valid`.
    acc_valid : Out(1)
        High for one cycle, :attr:`latency` cycles after the `last` beat was presented.

    Pipeline: `operand_registers` fabric registers on both operands of every lane (0 by
    default; on a large ECP5 fit one splits the route from the vector bank's block RAM to
    the DSP block), the multipliers (`multiplier_latency` cycles, at least 2: operand and
    product registers, so that Yosys packs both into a hard DSP: SB_MAC16), the adder tree
    (:class:`AdderTree`), the accumulator register. One beat per cycle, no stall:
    :attr:`latency` = `operand_registers` + `multiplier_latency` + tree latency + 1.

    Multipliers, per lane:

    - the last `lut_lanes` lanes: a :class:`~.lut_multiplier.LUTMultiplier` (LUTs and carry
      chains only, never a DSP block) of latency `multiplier_latency`, on every platform and
      in simulation alike;
    - the others, platform hook: when the platform has ``get_multiplier(a_width, b_width)``
      (with ``site=``, the place `sites` gives the lane, when it gives one) and it returns
      a multiplier (ports ``a``, ``b``, ``p``, ``latency`` 2) rather than None,
      the lane uses it in place of its operand registers, ``*`` and product register (the
      ECP5's MULT18X18D with its own registers: Yosys would keep the registers in the
      fabric); otherwise the fabric's registers and ``*``, which Yosys maps to the device's
      DSP block.

    A multiplier faster than `multiplier_latency` has its product delayed by registers to
    match, so every lane (and every PE of a MAC array, which gives all its PEs the same
    `multiplier_latency`) keeps the same latency.
    """

    def __init__(self, *, lanes: int, weight_width: int, act_width: int, acc_width: int,
                 tree_levels_per_stage: int = 1, lut_lanes: int = 0,
                 multiplier_latency: int = 2, operand_registers: int = 0, sites=None):
        require_positive(lanes=lanes, weight_width=weight_width, act_width=act_width,
                         acc_width=acc_width, tree_levels_per_stage=tree_levels_per_stage)
        product = weight_width + act_width
        if acc_width < product:
            raise ValueError(
                f"acc_width must hold one product (at least {product}), not {acc_width!r}")
        if isinstance(lut_lanes, bool) or not isinstance(lut_lanes, int) \
                or not 0 <= lut_lanes <= lanes:
            raise ValueError(f"lut_lanes must be an integer from 0 to lanes ({lanes}), not "
                             f"{lut_lanes!r}")
        if isinstance(multiplier_latency, bool) or not isinstance(multiplier_latency, int) \
                or multiplier_latency < 2:
            raise ValueError(f"multiplier_latency must be an integer of at least 2, not "
                             f"{multiplier_latency!r}")
        if isinstance(operand_registers, bool) or not isinstance(operand_registers, int) \
                or operand_registers < 0:
            raise ValueError(f"operand_registers must be a non-negative integer, not "
                             f"{operand_registers!r}")
        # The hard multipliers' places on the device, in lane order (None: the placer's).
        self._sites = list(sites) if sites is not None else [None] * (lanes - lut_lanes)
        if len(self._sites) != lanes - lut_lanes:
            raise ValueError(f"sites must name one place per hard multiplier "
                             f"({lanes - lut_lanes}), not {len(self._sites)}")
        self._operand_registers = operand_registers
        self._lut_lanes = lut_lanes
        self._multiplier_latency = multiplier_latency
        self._lanes = lanes
        self._weight_width = weight_width
        self._act_width = act_width
        self._acc_width = acc_width
        self._tree_levels_per_stage = tree_levels_per_stage
        super().__init__({
            "x": In(data.ArrayLayout(signed(act_width), lanes)),
            "weight": In(data.ArrayLayout(signed(weight_width), lanes)),
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "acc": Out(signed(acc_width)),
            "acc_valid": Out(1),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @staticmethod
    def latency_of(lanes: int, tree_levels_per_stage: int, multiplier_latency: int = 2,
                   operand_registers: int = 0) -> int:
        """Cycles from a beat at the inputs to its row's result at `acc`: the operand
        registers, the multipliers, the tree, the accumulator."""
        return (operand_registers + multiplier_latency
                + AdderTree.latency_of(lanes, tree_levels_per_stage) + 1)

    @property
    def latency(self) -> int:
        return self.latency_of(self._lanes, self._tree_levels_per_stage,
                               self._multiplier_latency, self._operand_registers)

    @property
    def lut_lanes(self) -> int:
        return self._lut_lanes

    def _multipliers(self, platform) -> list:
        """Per lane, a LUT multiplier (the last `lut_lanes`), the platform's multiplier
        (``get_multiplier`` hook), or None for the fabric's registers and ``*``."""
        first_lut = self._lanes - self._lut_lanes
        get_multiplier = getattr(platform, "get_multiplier", None)
        multipliers = []
        for lane in range(self._lanes):
            if lane >= first_lut:
                multipliers.append(LUTMultiplier(self._act_width, self._weight_width,
                                                 latency=self._multiplier_latency))
                continue
            if get_multiplier is None:
                multipliers.append(None)
                continue
            site = self._sites[lane]
            mult = get_multiplier(self._act_width, self._weight_width,
                                  **({"site": site} if site is not None else {}))
            latency = getattr(mult, "latency", None)
            if mult is not None and latency != 2:
                raise ValueError(f"the platform's multiplier must have latency 2 (the PE's "
                                 f"operand and product registers), not {latency!r}")
            multipliers.append(mult)
        return multipliers

    def elaborate(self, platform):
        multipliers = self._multipliers(platform)
        m = Module()
        m.submodules.tree = tree = AdderTree(count=self._lanes,
                                             width=self._weight_width + self._act_width,
                                             levels_per_stage=self._tree_levels_per_stage)
        product_width = self._weight_width + self._act_width
        # Data registers have no reset (only `valid` and `acc_valid` do): a reset is one
        # more net from the core's reset register to every flip-flop of the datapath, all
        # over the die (the ECP5-85k fit: 5.1-6.1 ns of routing to the product delays).
        x = [delay(m, self.x[lane], self._operand_registers, f"lane{lane}_x_early",
                   reset_less=True) for lane in range(self._lanes)]
        weight = [delay(m, self.weight[lane], self._operand_registers, f"lane{lane}_w_early",
                        reset_less=True) for lane in range(self._lanes)]
        for lane, mult in enumerate(multipliers):
            if mult is not None:
                m.submodules[f"lane{lane}_mult"] = mult
                m.d.comb += [mult.a.eq(x[lane]), mult.b.eq(weight[lane])]
                # A faster multiplier waits for the slowest (a LUT lane's).
                product = Signal(signed(product_width), name=f"lane{lane}_p")
                m.d.comb += [
                    product.eq(mult.p[:product_width]),
                    tree.terms[lane].eq(delay(m, product, self._multiplier_latency - mult.latency,
                                              f"lane{lane}_product", reset_less=True)),
                ]
                continue
            x_operand = Signal(signed(self._act_width), name=f"lane{lane}_x_operand",
                               reset_less=True)
            w_operand = Signal(signed(self._weight_width), name=f"lane{lane}_w_operand",
                               reset_less=True)
            product = Signal(signed(product_width), name=f"lane{lane}_product", reset_less=True)
            m.d.sync += [
                x_operand.eq(x[lane]),
                w_operand.eq(weight[lane]),
                product.eq(x_operand * w_operand),
            ]
            m.d.comb += tree.terms[lane].eq(
                delay(m, product, self._multiplier_latency - 2, f"lane{lane}_product",
                      reset_less=True))

        # Control travels beside the data: the multipliers' cycles, then the tree. Register
        # duplication: every PE's chains start with a register of its own (`copy`): the
        # same chain in every PE would be one register for all of them after Yosys merges
        # identical registers, `first` one flip-flop fanning out to every PE's carry chain
        # (the ECP5 fits: 3.8 ns of routing), `valid` to every accumulator's enable.
        stages = self._operand_registers + self._multiplier_latency + tree.latency
        # `first` and `last` count only beside `valid`: they need no reset.
        valid = copy_flag(m, self.valid, stages, "valid")
        first = copy(m, self.first, stages, "first", reset_less=True)
        last = copy(m, self.last, stages, "last", reset_less=True)

        # The sum is truncated to acc_width: the accumulator wraps modulo 2**acc_width, and
        # wrapping each partial sum gives the same result as wrapping the exact total.
        # `first` gates the accumulator in front of the adder: one input of each bit's
        # LUT beside the carry chain on both families (after the adder, as a multiplexer,
        # it cost the iCE40 an LUT level and its carry chain's placement: 59.5 MHz
        # against 64.0, median of 3 seeds).
        row_sum = Signal(signed(self._acc_width))
        acc = Signal(signed(self._acc_width), name="acc_reg", reset_less=True)
        m.d.comb += [row_sum.eq(Mux(first, 0, acc) + tree.total), self.acc.eq(acc)]
        with m.If(valid):
            m.d.sync += acc.eq(row_sum)
        m.d.sync += self.acc_valid.eq(valid & last)
        return m
