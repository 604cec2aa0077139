"""A processing element: `lanes` multipliers, a pipelined adder tree, an accumulator."""

from amaranth.hdl import ClockSignal, Instance, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .adder_tree import AdderTree
from .pipeline import delay, require_positive

__all__ = ["PE", "ECP5Multiplier"]


class ECP5Multiplier(wiring.Component):
    """p = a * b (signed 18 x 18) in one ECP5 MULT18X18D with its A, B and output registers:
    latency 2, like the PE's operand and product registers."""

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

    Pipeline: operand registers, product registers (so that Yosys packs both into a hard
    DSP: SB_MAC16 / MULT18X18D), the adder tree (:class:`AdderTree`), the accumulator
    register. One beat per cycle, no stall: :attr:`latency` = 3 + tree latency.
    """

    def __init__(self, *, lanes: int, weight_width: int, act_width: int, acc_width: int,
                 tree_levels_per_stage: int = 1):
        require_positive(lanes=lanes, weight_width=weight_width, act_width=act_width,
                         acc_width=acc_width, tree_levels_per_stage=tree_levels_per_stage)
        product = weight_width + act_width
        if acc_width < product:
            raise ValueError(
                f"acc_width must hold one product (at least {product}), not {acc_width!r}")
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
    def latency_of(lanes: int, tree_levels_per_stage: int) -> int:
        """Cycles from a beat at the inputs to its row's result at `acc`: operand and product
        registers, the tree, the accumulator."""
        return 2 + AdderTree.latency_of(lanes, tree_levels_per_stage) + 1

    @property
    def latency(self) -> int:
        return self.latency_of(self._lanes, self._tree_levels_per_stage)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tree = tree = AdderTree(count=self._lanes,
                                             width=self._weight_width + self._act_width,
                                             levels_per_stage=self._tree_levels_per_stage)
        # On the ECP5, Yosys maps `*` to a MULT18X18D but keeps the operand and product
        # registers in the fabric, so the multiplier's 3.9 ns sits between two fabric
        # registers. Instantiated, the block uses its own input and output registers: the
        # same two cycles, register to register inside the DSP.
        hard = (getattr(platform, "family", None) == "ecp5"
                and max(self._weight_width, self._act_width) <= 18)
        product_width = self._weight_width + self._act_width
        for lane in range(self._lanes):
            if hard:
                m.submodules[f"lane{lane}_mult"] = mult = ECP5Multiplier()
                m.d.comb += [mult.a.eq(self.x[lane]), mult.b.eq(self.weight[lane]),
                             tree.terms[lane].eq(mult.p[:product_width])]
                continue
            x_operand = Signal(signed(self._act_width), name=f"lane{lane}_x_operand")
            w_operand = Signal(signed(self._weight_width), name=f"lane{lane}_w_operand")
            product = Signal(signed(product_width), name=f"lane{lane}_product")
            m.d.sync += [
                x_operand.eq(self.x[lane]),
                w_operand.eq(self.weight[lane]),
                product.eq(x_operand * w_operand),
            ]
            m.d.comb += tree.terms[lane].eq(product)

        # Control travels beside the data: 2 cycles to the products, then the tree.
        stages = 2 + tree.latency
        valid = delay(m, self.valid, stages, "valid")
        first = delay(m, self.first, stages, "first")
        last = delay(m, self.last, stages, "last")

        # The sum is truncated to acc_width: the accumulator wraps modulo 2**acc_width, and
        # wrapping each partial sum gives the same result as wrapping the exact total.
        row_sum = Signal(signed(self._acc_width))
        m.d.comb += row_sum.eq(Mux(first, 0, self.acc) + tree.total)
        with m.If(valid):
            m.d.sync += self.acc.eq(row_sum)
        m.d.sync += self.acc_valid.eq(valid & last)
        return m
